"""The harness: determinism, checkpoints, resume after a crash or a SIGKILL, NaN handling."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ssl_bench.checkpoint import load_resume, read_encoder
from ssl_bench.embeddings import load_method_from_checkpoint
from ssl_bench.errors import SSLBenchError, TrainingDivergedError
from ssl_bench.trainer import load_data, train


def _weights(path):
    state, _ = read_encoder(path)
    return state


def test_same_seed_same_weights_and_log(tiny, runs, tmp_path):
    a = train(tiny(method="vicreg"), runs)
    b = train(tiny(method="vicreg"), tmp_path / "other")
    for k, v in _weights(a.checkpoint).items():
        assert torch.equal(v, _weights(b.checkpoint)[k]), k
    assert (a.run_dir / "train_log.csv").read_text().split("seconds")[0] == \
        (b.run_dir / "train_log.csv").read_text().split("seconds")[0]
    c = train(tiny(method="vicreg", seed=1), runs)
    assert not all(torch.equal(v, _weights(c.checkpoint)[k]) for k, v in _weights(a.checkpoint).items())


def test_checkpoint_layout_and_metadata(tiny, runs):
    res = train(tiny(method="byol", epochs=3), runs)
    ck = res.run_dir / "checkpoints"
    assert sorted(p.name for p in ck.glob("epoch_*.safetensors")) == [f"epoch_000{i}.safetensors" for i in (1, 2, 3)]
    _, meta = read_encoder(res.checkpoint)
    assert meta["method"] == "byol" and meta["epoch"] == 3 and meta["config"]["seed"] == 0
    assert meta["versions"]["torch"] == torch.__version__
    state = load_resume(ck / "resume.pt")  # loads with weights_only=True
    assert state["epoch"] == 3 and state["step"] == 3 * (512 // 64)
    assert not list(ck.glob("*.tmp")) and not list(ck.glob(".*"))


def test_encode_is_identical_after_reload(tiny, runs):
    cfg = tiny(method="simclr")
    res = train(cfg, runs)
    m, _, _ = load_method_from_checkpoint(res.checkpoint, torch.device("cpu"))
    x = load_data(cfg).x_test[:32]
    # the trained weights as saved, rebuilt twice independently: same output
    m2, _, _ = load_method_from_checkpoint(res.checkpoint, torch.device("cpu"))
    with torch.no_grad():
        assert torch.equal(m.encode(x), m2.encode(x))
        assert m.encode(x).shape == (32, m.out_dim)


class Crash(Exception):
    pass


def test_crash_then_resume_equals_uninterrupted(tiny, runs, tmp_path):
    cfg = tiny(method="byol", epochs=4)
    ref = train(cfg, tmp_path / "ref")

    def boom(epoch, logs):
        if epoch == 2:
            raise Crash()

    with pytest.raises(Crash):
        train(cfg, runs, callbacks=[boom])
    with pytest.raises(SSLBenchError, match="--resume"):
        train(cfg, runs)  # never silently overwrite what exists
    res = train(cfg, runs, resume=True)
    assert res.resumed_from == 2
    for k, v in _weights(ref.checkpoint).items():
        assert torch.equal(v, _weights(res.checkpoint)[k]), k
    log = (res.run_dir / "train_log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1", "2", "3", "4"]
    again = train(cfg, runs, resume=True)  # finished run: nothing to do
    assert again.resumed_from == 4


@pytest.mark.slow
def test_resume_refuses_a_run_whose_method_default_changed(tiny, runs, monkeypatch):
    """The run id hashes the config, not the method's defaults: a default changed since a run was
    started (as contrastive-jea's temperature, 0.1 -> 0.03) must not be resumed under the new value."""
    from ssl_bench.errors import CheckpointError
    from ssl_bench.registry import METHODS

    cfg = tiny(method="simclr", epochs=3)

    def stop_after_1(epoch, logs):
        if epoch == 1:
            raise Crash()

    with pytest.raises(Crash):
        train(cfg, runs, callbacks=[stop_after_1])
    cls = METHODS.get("simclr")
    was = cls.defaults["temperature"]
    monkeypatch.setattr(cls, "defaults", {**cls.defaults, "temperature": was * 2})
    with pytest.raises(CheckpointError, match=f"temperature {was!r} -> {was * 2!r}"):
        train(cfg, runs, resume=True)
    monkeypatch.setattr(cls, "defaults", {**cls.defaults, "temperature": was})
    res = train(cfg, runs, resume=True)  # the same recipe again: it continues
    assert res.resumed_from == 1
    assert read_encoder(res.checkpoint)[1]["recipe"]["temperature"] == was


def test_sigkill_mid_run_then_resume(tmp_path):
    out = tmp_path / "runs"
    args = [sys.executable, "-m", "ssl_bench", "train", "--method", "simclr", "--dataset", "digits",
            "--preset", "smoke", "--epochs", "30", "--batch-size", "64", "--set", "train_subset=256",
            "--out", str(out), "--no-progress", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    ckpts = []
    while time.time() < deadline and p.poll() is None:
        ckpts = list(out.glob("*/checkpoints/epoch_0002.safetensors"))
        if ckpts:
            break
        time.sleep(0.02)
    assert ckpts, "training never reached epoch 2"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = sorted(ckpts[0].parent.glob("epoch_*.safetensors"))
    assert 2 <= len(done) < 30
    r = subprocess.run(args + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resumed after epoch" in r.stdout
    assert len(list(ckpts[0].parent.glob("epoch_*.safetensors"))) == 30
    _, meta = read_encoder(ckpts[0].parent / "epoch_0030.safetensors")
    assert meta["epoch"] == 30


class NaNMethodError(Exception):
    pass


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoints(tiny, runs):
    from ssl_bench.method import Method
    from ssl_bench.registry import METHODS

    @METHODS.register("nan-after-epoch-1")
    class Bad(Method):
        def training_step(self, views):
            loss = self.backbone(views[0]).pow(2).mean()
            if self.hp_nan:
                loss = loss * float("nan")
            return loss, {}

        hp_nan = False

    def arm(epoch, logs):
        Bad.hp_nan = True

    try:
        with pytest.raises(TrainingDivergedError) as err:
            train(tiny(method="nan-after-epoch-1", epochs=3), runs, callbacks=[arm])
        msg = str(err.value)
        assert "\n" not in msg and "nan" in msg and "epoch_0001" in msg
        assert len(list(runs.glob("*/checkpoints/epoch_*.safetensors"))) == 1
    finally:
        METHODS.unregister("nan-after-epoch-1")


def test_evaluators_on_vector_data_run_on_one_cpu_thread(monkeypatch):
    import numpy as np

    from ssl_bench.datasets import load_dataset
    from ssl_bench.embeddings import Embeddings
    from ssl_bench.evaluators.knn import KNN
    from ssl_bench.pipeline import run_evaluators

    monkeypatch.setattr(KNN, "evaluate", lambda self, emb: {"top1": float(torch.get_num_threads())})
    x = np.eye(4, dtype=np.float32)
    emb = Embeddings(x, np.arange(4), x, np.arange(4))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cpu = torch.device("cpu")
        got = {name: run_evaluators(emb, ["knn"], data=load_dataset(name), device=cpu)["knn"][0]["top1"]
               for name in ("mog2d", "digits")}
        assert got == {"mog2d": 1.0, "digits": 2.0} and torch.get_num_threads() == 2
        assert run_evaluators(emb, ["knn"])["knn"][0]["top1"] == 2.0  # bare embeddings: unchanged
    finally:
        torch.set_num_threads(before)


def test_checkpoint_every_and_stop(tiny, runs):
    """``checkpoint_every`` writes the last epoch only (and every N-th); ``stop`` ends training after
    an epoch, which is then checkpointed; a stop callback that looks but says no changes nothing."""
    import torch

    from ssl_bench.trainer import train

    cfg = tiny(epochs=4)
    seen = []

    def look(epoch, method):
        seen.append((epoch, method.training))
        method.eval()  # a check may switch the mode: the next epoch switches it back
        return False

    res = train(cfg, runs / "a", checkpoint_every=4, stop=look)
    assert [e for e, _ in seen] == [1, 2, 3] and all(t for _, t in seen)  # asked after every epoch but the last
    written = sorted(p.name for p in (res.run_dir / "checkpoints").glob("epoch_*.safetensors"))
    assert written == ["epoch_0004.safetensors"]
    plain = train(cfg, runs / "b")
    assert len(list((plain.run_dir / "checkpoints").glob("epoch_*.safetensors"))) == 4
    from safetensors.torch import load_file

    a, b = load_file(res.checkpoint), load_file(plain.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    stopped = train(cfg, runs / "c", checkpoint_every=10, stop=lambda epoch, m: epoch == 2)
    assert stopped.epochs == 2 and stopped.checkpoint.name == "epoch_0002.safetensors"
    with pytest.raises(Exception, match="checkpoint_every must be >= 1"):
        train(cfg, runs / "d", checkpoint_every=0)
