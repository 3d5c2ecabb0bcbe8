"""The GPU-path switches of the trainer, checked on CPU: no host-device sync inside the step
(counted through the tensor -> Python conversions that force one), and ``compile: true``."""
import os
import sys

import pytest
import torch

from ssl_bench.trainer import train

#: Tensor -> host conversions: each one waits for the device on CUDA.
SYNCS = ("__float__", "__int__", "__bool__", "item", "tolist", "numpy")
#: Callers whose tensors live on the host even when training on CUDA (AdamW's step counters).
HOST_SIDE = ("torch/optim/",)


def _count_syncs(monkeypatch, cfg, out) -> int:
    calls = {"n": 0}
    for name in SYNCS:
        orig = getattr(torch.Tensor, name)

        def counted(self, *a, _orig=orig, **kw):
            caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
            calls["n"] += not any(h in caller for h in HOST_SIDE)
            return _orig(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, counted)
    train(cfg, out)
    monkeypatch.undo()
    return calls["n"]


@pytest.mark.parametrize("method", ["vicreg", "byol"])  # logs as tensors; EMA targets
def test_host_syncs_do_not_grow_with_the_number_of_steps(tiny, tmp_path, monkeypatch, method):
    # digits + cnn-small: 2 vs 8 steps per epoch, divergence check every 1000 steps
    few = tiny(method=method, dataset="digits", epochs=1, batch_size=32, train_subset=64, log_every=1000)
    many = tiny(method=method, dataset="digits", epochs=1, batch_size=32, train_subset=256, log_every=1000)
    n_few = _count_syncs(monkeypatch, few, tmp_path / "few")
    n_many = _count_syncs(monkeypatch, many, tmp_path / "many")
    assert n_few == n_many, f"{n_many - n_few} extra host syncs for 6 extra steps"
    # and the divergence check does sync once per log interval
    every = tiny(method=method, dataset="digits", epochs=1, batch_size=32, train_subset=256, log_every=1)
    assert _count_syncs(monkeypatch, every, tmp_path / "every") == n_many + 7


@pytest.mark.skipif(not os.environ.get("SSL_BENCH_TEST_COMPILE"),
                    reason="torch.compile (inductor, C++ codegen) took 75 s to compile the smoke step on this "
                           "2-core CPU; set SSL_BENCH_TEST_COMPILE=1 to run it")
def test_compile_trains_the_same_losses_as_eager(tiny, tmp_path):
    cfg = dict(method="simclr", epochs=1, train_subset=256)
    eager = train(tiny(**cfg), tmp_path / "eager")
    comp = train(tiny(compile=True, **cfg), tmp_path / "compiled")
    le = (eager.run_dir / "train_log.csv").read_text().splitlines()
    lc = (comp.run_dir / "train_log.csv").read_text().splitlines()
    i = le[0].split(",").index("loss")
    assert float(lc[1].split(",")[i]) == pytest.approx(float(le[1].split(",")[i]), abs=1e-5)
