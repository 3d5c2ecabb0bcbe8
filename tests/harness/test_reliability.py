"""Reliability and security: data files never execute code, faults are one-line errors."""
import json

from ssl_bench.results import read_rows
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssl_bench.datasets import load_dataset, safe_unpickle
from ssl_bench.errors import DatasetNotFoundError


class _Payload:
    """Unpickling this object calls builtins.open(marker, 'w'): it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious_cifar(root: Path, marker: Path) -> Path:
    """A complete-looking cifar-10-batches-py/ whose first batch carries a code-running payload."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        if name == "data_batch_1":
            batch["x"] = _Payload(marker)
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return d


def test_payload_really_runs_under_plain_pickle(tmp_path):
    # the fixture is a real attack: plain pickle.load creates the marker
    marker = tmp_path / "pwned"
    d = _malicious_cifar(tmp_path, marker)
    with open(d / "data_batch_1", "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_malicious_cifar_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    _malicious_cifar(tmp_path, marker)
    with pytest.raises(DatasetNotFoundError, match="refused global"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_safe_unpickle_reads_numpy_batches_of_every_protocol(tmp_path, protocol):
    a = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    p = tmp_path / "b"
    with open(p, "wb") as f:
        pickle.dump({"data": a, "labels": [1, 2], "batch_label": "x", b"k": 1.5}, f, protocol=protocol)
    out = safe_unpickle(p)
    assert np.array_equal(out["data"], a) and out["labels"] == [1, 2] and out[b"k"] == 1.5


def test_garbage_cifar_file_is_a_clean_error(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (d / name).write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(DatasetNotFoundError, match="not a CIFAR data file"):
        load_dataset("cifar10", root=tmp_path)


def _cli(*args, cwd=None, env=None):
    r = subprocess.run([sys.executable, "-m", "ssl_bench", *args], capture_output=True, text=True, cwd=cwd,
                       timeout=300, env=env)
    return r.returncode, r.stdout, r.stderr


def _rewrite_meta(ckpt: Path, **changes) -> None:
    from safetensors.torch import save_file

    from ssl_bench.checkpoint import META_KEY, read_encoder

    state, meta = read_encoder(ckpt)
    meta["config"].update(changes)
    save_file(state, str(ckpt), metadata={META_KEY: json.dumps(meta, sort_keys=True)})


@pytest.mark.slow
def test_eval_never_follows_a_checkpoints_data_root(tmp_path):
    """A run bundle whose checkpoint says dataset=cifar10 with a crafted CIFAR folder, both at the
    recorded data root and at ./data in the working directory: evaluating it runs no code."""
    import os

    code, out, err = _cli("train", "--method", "simclr", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1",
                          "--out", str(tmp_path / "runs"), "--set", "precision=fp32")
    assert code == 0, err
    ckpt = next((tmp_path / "runs").rglob("epoch_*.safetensors"))
    evil = tmp_path / "bundle"
    marker = tmp_path / "pwned"
    _malicious_cifar(evil, marker)
    _malicious_cifar(evil / "data", marker)  # the default root ./data, seen from cwd=bundle
    _rewrite_meta(ckpt, dataset="cifar10", data_root=str(evil))
    env = {k: v for k, v in os.environ.items() if k != "SSL_BENCH_DATA"}
    code, _, err = _cli("eval", str(ckpt), "--evaluators", "knn", cwd=evil, env=env)
    assert not marker.exists()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    # a dataset name that is not registered is refused by name, before any file is read
    _rewrite_meta(ckpt, dataset="../../etc", data_root=None)
    code, _, err = _cli("eval", str(ckpt), "--evaluators", "knn", cwd=evil, env=env)
    assert code == 2 and "unknown dataset" in err and len(err.strip().splitlines()) == 1, err
    # the user's own --dataset wins over the metadata
    code, out, err = _cli("eval", str(ckpt), "--evaluators", "knn", "--dataset", "mog2d", cwd=evil, env=env)
    assert code == 0 and "knn:" in out, err
    assert not marker.exists()


# ============================================================================================
# Everything below: issue 14 beyond item 1 (sweeps survive failures, non-finite embeddings, one
# error boundary, input validation, checkpoint digest, crash consistency, locks, disk and data
# faults). In-process where possible; a subprocess only where a real kill or a limit is the point.
# ============================================================================================
import gzip
import os
import signal
import stat
import textwrap

import torch

from conftest import tiny_config
from ssl_bench import cli
from ssl_bench.checkpoint import (DIGEST_KEY, META_KEY, RunLockedError, atomic_write_text, read_encoder,
                                  run_lock, save_encoder)
from ssl_bench.errors import CheckpointError, SSLBenchError
from ssl_bench.trainer import _read_log, train


def _main(argv, capsys):
    """Run the CLI in-process: (status, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("ssl-bench: error: "), err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny trained run (2 epochs), shared by the read-only checks of this module."""
    out = tmp_path_factory.mktemp("trained") / "runs"
    res = train(tiny_config(evaluators=["knn"]), out)
    return res


def _copy_ckpt(trained, dst: Path) -> Path:
    import shutil

    d = dst / "run" / "checkpoints"
    d.mkdir(parents=True)
    shutil.copy(trained.checkpoint, d / trained.checkpoint.name)
    return d / trained.checkpoint.name


def _resave(ckpt: Path, state=None, meta=None, keep_digest=True):
    from safetensors.torch import save_file

    s0, m0 = read_encoder(ckpt) if (state is None or meta is None) else (None, None)
    state = state if state is not None else s0
    meta = dict(meta if meta is not None else m0)
    if not keep_digest:
        meta.pop(DIGEST_KEY, None)
    save_file(state, str(ckpt), metadata={META_KEY: json.dumps(meta)})


# -- malformed invocations: one line, status 2 ------------------------------------------------
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, trained):
    d = tmp_path_factory.mktemp("bad")
    f = {}
    f["latin1"] = d / "latin1.yaml"
    f["latin1"].write_bytes("epochs: 2\nmethod: caf\xe9\n".encode("latin-1"))
    f["utf16"] = d / "utf16.json"
    f["utf16"].write_bytes('{"epochs": 2}'.encode("utf-16"))
    f["badyaml"] = d / "bad.yaml"
    f["badyaml"].write_text("epochs: [1, 2\n")
    f["list"] = d / "list.yaml"
    f["list"].write_text("- 1\n- 2\n")
    f["unknown"] = d / "unknown.yaml"
    f["unknown"].write_text("epoch: 3\n")
    f["scale"] = d / "scale.yaml"
    f["scale"].write_text("views:\n  crop_scale: [0.5, 1.5]\n")
    f["evs"] = d / "evs.yaml"
    f["evs"].write_text("evaluators: []\n")
    f["dir"] = d / "a_dir.yaml"
    f["dir"].mkdir()
    f["garbage_npz"] = d / "garbage.npz"
    f["garbage_npz"].write_bytes(b"PK\x03\x04 not really a zip")
    rng = np.random.default_rng(0)
    good = dict(train_x=rng.normal(size=(50, 4)).astype(np.float32), train_y=np.arange(50) % 3,
                test_x=rng.normal(size=(20, 4)).astype(np.float32), test_y=np.arange(20) % 3)
    for name, change in {"nan_npz": dict(train_x=np.full((50, 4), np.nan, np.float32)),
                         "complex_npz": dict(test_x=(rng.normal(size=(20, 4)) * 1j).astype(np.complex64)),
                         "huge_npz": dict(train_x=rng.normal(size=(50, 4)) * 1e30),
                         "neg_label_npz": dict(train_y=-(np.arange(50) % 3) - 1),
                         "big_label_npz": dict(test_y=np.full(20, 10**9)),
                         "short_label_npz": dict(train_y=np.arange(10)),
                         "good_npz": {}}.items():
        f[name] = d / f"{name}.npz"
        np.savez(f[name], **{**good, **change})
    ckdir = d / "ck"
    ckdir.mkdir()
    f["flipped"] = _copy_ckpt(trained, ckdir / "flipped")
    raw = bytearray(f["flipped"].read_bytes())
    raw[-40] ^= 0x01
    f["flipped"].write_bytes(bytes(raw))
    f["truncated"] = _copy_ckpt(trained, ckdir / "truncated")
    f["truncated"].write_bytes(f["truncated"].read_bytes()[:500])
    _, meta = read_encoder(trained.checkpoint)
    for name, m in {"meta_list": {"config": [], "kind": "vector", "input_shape": [2], "epoch": 1},
                    "meta_shape": {**meta, "input_shape": "2"},
                    "meta_kind": {**meta, "kind": "audio"},
                    "meta_epoch": {**meta, "epoch": "two"},
                    "meta_config": {**meta, "config": {**meta["config"], "epochs": -3}},
                    "meta_missing": {k: v for k, v in meta.items() if k != "input_shape"}}.items():
        f[name] = _copy_ckpt(trained, ckdir / name)
        _resave(f[name], meta=m)
    return f


MALFORMED = [
    # argument parsing
    ["train", "--epochs", "two"], ["train", "--epochs", "1e20"], ["train", "--batch-size", "x"],
    ["train", "--lr", "fast"], ["nonsense-command"], ["train", "--no-such-flag"], ["list", "things"],
    ["run", "--preset", "huge"], ["eval"], ["check-collapse", "--jobs", "many"],
    # numeric ranges and devices (config validation, before torch)
    ["train", "--epochs", "0"], ["train", "--epochs", "-5"], ["train", "--set", "epochs=100000000000000000000"],
    ["train", "--batch-size", "0"], ["train", "--batch-size", "-1"], ["train", "--batch-size", "1"],
    ["train", "--lr", "0"], ["train", "--lr", "-0.1"], ["train", "--lr", "nan"], ["train", "--lr", "inf"],
    ["train", "--device", "gpu"], ["train", "--device", "cuda:x"], ["train", "--device", ""],
    ["train", "--seed", "-1"], ["train", "--set", "seed=99999999999999"], ["train", "--set", "weight_decay=-1"],
    ["train", "--set", "warmup_frac=1.5"], ["train", "--set", "num_threads=0"], ["train", "--set", "log_every=0"],
    ["train", "--set", "train_subset=0"], ["train", "--set", "optimizer=adam"], ["train", "--set", "precision=fp8"],
    ["train", "--set", "epochs"], ["train", "--set", "=3"], ["train", "--set", "epochs=[1"],
    ["train", "--set", "nokey=1"], ["train", "--set", "method_kwargs=3"], ["train", "--set", "evaluators=knn"],
    ["train", "--seeds", "0"],
    # views
    ["train", "--set", "views={crop_scale: [0.5, 1.5]}"], ["train", "--set", "views={crop_scale: [0.9, 0.2]}"],
    ["train", "--set", "views={crop_scale: 0.5}"], ["train", "--set", "views={flip_p: 2}"],
    ["train", "--set", "views={noise_std: -1}"], ["train", "--set", "views={mask_patch: 0}"],
    # evaluator lists
    ["train", "--evaluators", ""], ["train", "--evaluators", ",,"], ["train", "--evaluators", "knn,,linear"],
    ["train", "--evaluators", "knn,knn"], ["train", "--dataset", "mog2d", "--evaluators", "knn,nope"],
    ["run", "--methods", ""], ["run", "--methods", "simclr,nope", "--dataset", "mog2d"],
    ["run", "--seeds", "a,b"], ["run", "--seeds", ","], ["run", "--methods", "simclr,byol", "--opt", "proj_dim=8"],
    ["run", "--methods", "simclr", "--opt", "byol.proj_dim=8", "--dataset", "mog2d"],
    # method options: sizes, types
    ["train", "--dataset", "mog2d", "--opt", "proj_dim=0"], ["train", "--dataset", "mog2d", "--opt", "proj_dim=-4"],
    ["train", "--dataset", "mog2d", "--opt", "proj_dim=1.5"], ["train", "--dataset", "mog2d", "--opt", "proj_dim=abc"],
    ["train", "--dataset", "mog2d", "--opt", "temperature=.nan"], ["train", "--dataset", "mog2d", "--opt", "x"],
    ["train", "--dataset", "mog2d", "--opt", "nosuch=1"], ["train", "--method", "nosuch"],
    ["train", "--dataset", "nosuch"], ["train", "--dataset", "mog2d", "--set", "dataset_kwargs={n_components: 0}"],
    ["train", "--dataset", "mog2d", "--set", "dataset_kwargs={n_train: 1e30}"],
    # config files
    ["train", "--config", "{latin1}"], ["train", "--config", "{utf16}"], ["train", "--config", "{badyaml}"],
    ["train", "--config", "{list}"], ["train", "--config", "{unknown}"], ["train", "--config", "{scale}"],
    ["train", "--config", "{evs}"], ["train", "--config", "{dir}"], ["train", "--config", "/no/such/file.yaml"],
    # eval-embeddings: files, labels, options
    ["eval-embeddings", "/no/such.npz"], ["eval-embeddings", "{garbage_npz}"], ["eval-embeddings", "{nan_npz}"],
    ["eval-embeddings", "{complex_npz}"], ["eval-embeddings", "{huge_npz}", "--evaluators", "rankme"],
    ["eval-embeddings", "{neg_label_npz}"], ["eval-embeddings", "{big_label_npz}"],
    ["eval-embeddings", "{short_label_npz}"], ["eval-embeddings", "{good_npz}", "--evaluators", ""],
    ["eval-embeddings", "{good_npz}", "--evaluators", "knn", "--eval-opt", "knn.k=0"],
    ["eval-embeddings", "{good_npz}", "--evaluators", "knn", "--eval-opt", "knn.ks=[0]"],
    ["eval-embeddings", "{good_npz}", "--evaluators", "knn", "--eval-opt", "knn.ks=[2.5]"],
    ["eval-embeddings", "{good_npz}", "--evaluators", "knn", "--eval-opt", "knn.k=1000"],
    ["eval-embeddings", "{good_npz}", "--evaluators", "knn", "--eval-opt", "knn.k=abc"],
    ["eval-embeddings", "{good_npz}", "--evaluators", "knn", "--eval-opt", "knn.temperature=0"],
    ["eval-embeddings", "{good_npz}", "--evaluators", "knn", "--eval-opt", "knn.backend=gpu"],
    ["eval-embeddings", "{good_npz}", "--evaluators", "knn", "--eval-opt", "knn.ks=5"],
    ["eval-embeddings", "{good_npz}", "--evaluators", "linear", "--eval-opt", "linear.val_frac=1.5"],
    ["eval-embeddings", "{good_npz}", "--evaluators", "linear", "--eval-opt", "linear.weight_decays=[]"],
    ["eval-embeddings", "{good_npz}", "--evaluators", "rankme", "--eval-opt", "rankme.max_samples=0"],
    ["eval-embeddings", "{good_npz}", "--evaluators", "knn", "--eval-opt", "k=3"],
    ["eval-embeddings", "{good_npz}", "--evaluators", "lidar"],
    # checkpoints
    ["eval", "/no/such.safetensors"], ["eval", "{flipped}", "--dataset", "mog2d"], ["eval", "{truncated}"],
    ["eval", "{meta_list}"], ["eval", "{meta_shape}"], ["eval", "{meta_kind}"], ["eval", "{meta_epoch}"],
    ["eval", "{meta_config}"], ["eval", "{meta_missing}"], ["eval", "{good_npz}"],
    ["eval", "{flipped}", "--device", "tpu"], ["eval", "{flipped}", "--evaluators", ""],
    ["leaderboard", "--runs", "/no/such/runs"],
]


@pytest.mark.parametrize("argv", MALFORMED, ids=[" ".join(a)[:60] for a in MALFORMED])
def test_malformed_invocation_is_one_line_status_2(argv, bad_files, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing lands in the repository
    for k, v in bad_files.items():
        argv = [a.replace("{" + k + "}", str(v)) for a in argv]
    if argv[0] in ("train", "run") and "--out" not in argv:
        argv += ["--out", str(tmp_path / "runs")]
    code, _, err = _main(argv, capsys)
    _assert_one_line_error(code, err)


def test_at_least_100_malformed_invocations_are_kept():
    assert len(MALFORMED) >= 100


def test_traceback_flag_and_env_show_the_trace(capsys, monkeypatch):
    from ssl_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="epochs"):
        cli.main(["--traceback", "train", "--epochs", "0"])
    with pytest.raises(ConfigError, match="epochs"):
        cli.main(["train", "--epochs", "0", "--traceback"])
    monkeypatch.setenv("SSL_BENCH_TRACEBACK", "1")
    with pytest.raises(ConfigError, match="epochs"):
        cli.main(["train", "--epochs", "0"])


def test_config_errors_come_before_torch_is_imported():
    code = textwrap.dedent("""
        import sys, time
        t0 = time.perf_counter()
        from ssl_bench.cli import main
        rc = main(["train", "--epochs", "0"])
        print(rc, "torch" in sys.modules, round(time.perf_counter() - t0, 2))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    rc, torch_loaded, _secs = r.stdout.split()
    assert rc == "2" and torch_loaded == "False", r.stdout + r.stderr
    assert r.stderr.strip().startswith("ssl-bench: error: config key 'epochs'")


def test_broken_pipe_is_silent():
    r = subprocess.run(f"{sys.executable} -m ssl_bench list methods | head -1", shell=True, capture_output=True,
                       text=True, timeout=300)
    assert r.stdout.count("\n") == 1 and r.stderr == "", r.stderr


def test_one_line_helper_flattens_multiline_messages():
    assert cli._one_line(ValueError("a\n  b\n")) == "ValueError: a b"
    e = PermissionError(13, "Permission denied", "/x/results.jsonl")
    assert cli._one_line(e) == "/x/results.jsonl: Permission denied"


# -- checkpoint digest -------------------------------------------------------------------------
def test_checkpoint_carries_a_digest_and_flipped_bytes_are_refused(trained, tmp_path):
    _, meta = read_encoder(trained.checkpoint)
    assert len(meta[DIGEST_KEY]) == 64
    ck = _copy_ckpt(trained, tmp_path)
    raw = bytearray(ck.read_bytes())
    raw[-7] ^= 0x80  # inside the last tensor's data: safetensors itself does not notice
    ck.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="do not match the digest") as ei:
        read_encoder(ck)
    assert "\n" not in str(ei.value)


def test_checkpoint_without_digest_still_loads(trained, tmp_path):
    ck = _copy_ckpt(trained, tmp_path)
    _resave(ck, keep_digest=False)
    state, meta = read_encoder(ck)
    assert DIGEST_KEY not in meta and state


# -- non-finite embeddings -----------------------------------------------------------------------
@pytest.mark.parametrize("evaluator", ["knn", "linear", "lowshot", "rankme", "alpha-req", "collapse"])
def test_every_evaluator_refuses_non_finite_embeddings(evaluator):
    from ssl_bench.embeddings import Embeddings
    from ssl_bench.pipeline import NonFiniteEmbeddingsError, run_evaluators

    x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    x[3, 1] = np.nan
    emb = Embeddings(x, np.arange(60) % 3, x[:20].copy(), np.arange(20) % 3, "nan-run")
    with pytest.raises(NonFiniteEmbeddingsError, match="NaN/inf"):
        run_evaluators(emb, [evaluator])
    emb.train_x, emb.test_x = np.nan_to_num(x) * 1e30, np.nan_to_num(x[:20]) * 1e30
    with pytest.raises(NonFiniteEmbeddingsError, match="values up to"):
        run_evaluators(emb, [evaluator])


def test_checkpoint_with_nan_weights_writes_no_numbers(trained, tmp_path, capsys):
    ck = _copy_ckpt(trained, tmp_path)
    state, meta = read_encoder(ck)
    state = {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v) for k, v in state.items()}
    from safetensors.torch import save_file

    from ssl_bench.checkpoint import tensors_digest

    save_file(state, str(ck), metadata={META_KEY: json.dumps({**meta, DIGEST_KEY: tensors_digest(state)})})
    code, out, err = _main(["eval", str(ck), "--dataset", "mog2d", "--evaluators", "knn,linear,rankme,collapse,alpha-req"],
                           capsys)
    _assert_one_line_error(code, err)
    assert "NaN/inf" in err and out == ""
    assert not (ck.parent.parent / "results.jsonl").exists()


# -- sweeps survive failures -----------------------------------------------------------------------
@pytest.fixture
def nan_method():
    """A test plugin whose loss becomes NaN after a few steps (a diverging method)."""
    from ssl_bench import losses
    from ssl_bench.heads import MLPHead
    from ssl_bench.method import Method
    from ssl_bench.registry import METHODS

    class NanAfter(Method):
        """Diverges on purpose (test plugin)."""
        defaults = dict(after=3)

        def __init__(self, backbone, hp=None, spec=None):
            super().__init__(backbone, hp, spec)
            self.projector = MLPHead(backbone.out_dim, 32, 16)
            self.steps = 0

        def training_step(self, views):
            self.steps += 1
            z1, z2 = (self.projector(self.backbone(v)) for v in views)
            loss = losses.info_nce(z1, z2, 0.2)
            return (loss * float("nan") if self.steps > self.hp.after else loss), {}

    METHODS.register("test-nan-after", NanAfter)
    yield "test-nan-after"
    METHODS.unregister("test-nan-after")


def test_sweep_records_a_diverged_method_and_goes_on(nan_method, tmp_path, capsys):
    from ssl_bench.results import find_result_files, read_rows

    out, lb = tmp_path / "runs", tmp_path / "lb"
    argv = ["run", "--methods", f"simclr,{nan_method},byol", "--dataset", "mog2d", "--preset", "smoke",
            "--epochs", "1", "--evaluators", "knn,rankme", "--set", "train_subset=512", "--set", "batch_size=64",
            "--set", "eval_train_subset=512", "--set", "eval_test_subset=256", "--set", "precision=fp32",
            "--device", "cpu", "--no-progress", "--no-baselines", "--out", str(out), "--leaderboards", str(lb)]
    code, stdout, err = _main(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]  # the sweep finished, a run diverged: exit 1, not 2
    assert code == 1 and len(lines) == 1 and lines[0].startswith("ssl-bench: failed: "), err
    assert f"{nan_method} seed 0 diverged" in err
    assert (lb / "mog2d.csv").is_file() and (lb / "mog2d.md").is_file()
    rows = read_rows(find_result_files(out))
    by_method = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    assert {"simclr", "byol", nan_method} <= set(by_method)
    assert all(r.get("status", "ok") == "ok" and np.isfinite(r["value"]) for m in ("simclr", "byol") for r in by_method[m])
    (bad,) = by_method[nan_method]
    assert bad["status"] == "diverged" and bad["value"] is None and "loss became nan" in bad["reason"]
    assert "\n" not in bad["reason"]
    assert f"[{nan_method} seed 0] DIVERGED" in stdout


def test_sweep_records_a_method_specific_failure(tmp_path):
    from ssl_bench.pipeline import run_sweep

    base = tiny_config(evaluators=["knn"], epochs=1)
    rows, failures = run_sweep(["simclr", "byol"], base, [0], tmp_path / "runs", baselines=False,
                               method_opts={"byol": {"proj_dim": "wide"}}, return_failures=True, log=lambda m: None)
    assert [(f["method"], f["status"]) for f in failures] == [("byol", "failed")]
    assert "proj_dim" in failures[0]["reason"]
    assert any(r["method"] == "simclr" and r.get("status", "ok") == "ok" for r in rows)


def test_sweep_stops_on_a_disk_fault(tmp_path, monkeypatch):
    """A file-system fault is not the method's: the sweep stops with it (and nothing is faked as failed)."""
    import ssl_bench.pipeline as pl

    def no_space(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl, "train", no_space)
    with pytest.raises(OSError):
        pl.run_sweep(["simclr"], tiny_config(evaluators=["knn"]), [0], tmp_path / "runs", baselines=False,
                     log=lambda m: None)
    assert not list((tmp_path / "runs").rglob("results.jsonl"))


# -- crash consistency ----------------------------------------------------------------------------
def _weights(run_dir: Path) -> dict:
    state, _ = read_encoder(sorted((run_dir / "checkpoints").glob("epoch_*.safetensors"))[-1])
    return state


def _log_rows(run_dir: Path) -> list[tuple]:
    return [(r["epoch"], r["step"], r["loss"]) for r in _read_log(run_dir / "train_log.csv")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "runs"
    res = train(tiny_config(evaluators=["knn"]), out)
    return res.run_dir


class _Killed(BaseException):
    pass


# the atomic writes of a 2-epoch run, in order: config.json, then per epoch train_log.csv,
# epoch_N.safetensors, epoch_N.json, resume.pt
WRITES = ["config", "log1", "weights1", "meta1", "resume1", "log2", "weights2", "meta2", "resume2"]


# A crash just before the rename of write n leaves the files of a crash just after write n - 1
# (plus a tmp file, which the real-kill test below covers), so "after" of every write and
# "before" of the first one reach every state on disk.
CRASHES = [(1, "before")] + [(n, "after") for n in range(1, len(WRITES) + 1)]


@pytest.mark.parametrize("n,when", CRASHES, ids=[f"{w}-{WRITES[n - 1]}" for n, w in CRASHES])
def test_crash_inside_every_checkpoint_write_then_resume_matches(n, when, tmp_path, monkeypatch, reference):
    """Crash inside the n-th atomic write (before or after its rename), then --resume: the final
    weights and the train log equal those of an uninterrupted run."""
    import ssl_bench.checkpoint as ck

    real = ck.os.replace
    calls = {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == n and when == "before":
            raise _Killed(dst)
        real(src, dst)
        if calls["n"] == n:
            raise _Killed(dst)

    out = tmp_path / "runs"
    cfg = tiny_config(evaluators=["knn"])
    monkeypatch.setattr(ck.os, "replace", replace)
    with pytest.raises(_Killed):
        train(cfg, out)
    monkeypatch.setattr(ck.os, "replace", real)
    run_dir = out / reference.name
    res = train(cfg, out, resume=True)
    assert res.run_dir == run_dir
    ref, got = _weights(reference), _weights(run_dir)
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    assert _log_rows(run_dir) == _log_rows(reference)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == \
        sorted(p.name for p in (reference / "checkpoints").iterdir())
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / ".lock").exists()


def test_sigkill_between_weights_and_resume_state_leaves_nothing_behind(tmp_path, reference):
    """A real SIGKILL inside the first resume-state write (the tmp file half written, the lock
    file left with a dead PID): the restart takes the lock over, removes the tmp file and does
    not log epoch 1 twice."""
    out = tmp_path / "runs"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        import ssl_bench.checkpoint as ck
        from conftest import tiny_config
        from ssl_bench.trainer import train
        real = ck.atomic_write
        def atomic_write(path, write):
            if path.name == "resume.pt":
                def half(tmp):
                    open(tmp, "wb").write(b"x" * 1000)
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(path, half)
            return real(path, write)
        ck.atomic_write = atomic_write
        train(tiny_config(evaluators=["knn"]), {str(out)!r})
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    run_dir = out / reference.name
    assert list((run_dir / "checkpoints").glob(".resume.pt.*.tmp"))
    assert json.loads((run_dir / ".lock").read_text())["what"] == "train"  # the dead PID's lock
    assert [r[0] for r in _log_rows(run_dir)] == ["1"]
    train(tiny_config(evaluators=["knn"]), out, resume=True)
    assert not list(run_dir.rglob("*.tmp"))
    assert _log_rows(run_dir) == _log_rows(reference)
    ref, got = _weights(reference), _weights(run_dir)
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_resume_state_beyond_epochs_is_an_error(tmp_path):
    cfg = tiny_config(evaluators=["knn"])
    res = train(cfg, tmp_path / "runs")
    p = res.run_dir / "checkpoints" / "resume.pt"
    state = torch.load(p, weights_only=True)
    state["epoch"] = 7
    torch.save(state, p)
    with pytest.raises(CheckpointError, match="beyond this run's 2 epochs"):
        train(cfg, tmp_path / "runs", resume=True)


def test_torn_train_log_keeps_its_good_rows(tmp_path, reference):
    cfg = tiny_config(evaluators=["knn"], epochs=2)
    out = tmp_path / "runs"
    import ssl_bench.checkpoint as ck

    real = ck.os.replace
    calls = {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        real(src, dst)
        if calls["n"] == 5:  # after epoch 1's resume state
            raise _Killed()

    ck.os.replace = replace
    try:
        with pytest.raises(_Killed):
            train(cfg, out)
    finally:
        ck.os.replace = real
    log = out / reference.name / "train_log.csv"
    good = log.read_text()
    log.write_text(good + "2,32,0.0,3.1")  # a torn second row
    train(cfg, out, resume=True)
    assert _log_rows(out / reference.name) == _log_rows(reference)
    assert (log.parent / "train_log.csv.damaged").read_text().endswith("2,32,0.0,3.1")


def test_files_follow_the_umask_and_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        p = tmp_path / "a.txt"
        atomic_write_text(p, "x")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        os.umask(0o027)
        atomic_write_text(tmp_path / "b.txt", "x")
        assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o640
        p.chmod(0o664)
        atomic_write_text(p, "y")  # a replaced file keeps its mode
        assert stat.S_IMODE(p.stat().st_mode) == 0o664
    finally:
        os.umask(old)


def test_leaderboard_readme_keeps_its_mode(tmp_path):
    from ssl_bench.leaderboard import update_readme

    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- leaderboard:mog2d -->\nold\n<!-- /leaderboard -->\n")
    readme.chmod(0o644)
    assert update_readme(readme, "mog2d", "| a |\n")
    assert stat.S_IMODE(readme.stat().st_mode) == 0o644 and "| a |" in readme.read_text()


def test_checkpoint_files_are_not_private(trained):
    for p in (trained.checkpoint, trained.checkpoint.with_suffix(".json"), trained.run_dir / "train_log.csv"):
        assert stat.S_IMODE(p.stat().st_mode) & 0o044, p


# -- locks and concurrent writers ------------------------------------------------------------------
def test_second_process_gets_one_line_naming_the_holder(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "r"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from ssl_bench.checkpoint import run_lock
        with run_lock({str(run_dir)!r}, "train"):
            print("held", flush=True)
            time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"locked by PID {holder.pid} \\(train"):
            with run_lock(run_dir, "evaluate"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(run_dir, "evaluate"):  # the dead holder's lock is taken over
        assert json.loads((run_dir / ".lock").read_text())["pid"] == os.getpid()
    assert not (run_dir / ".lock").exists()


def test_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cfg = tiny_config(evaluators=["knn"], epochs=1)
    out = tmp_path / "runs"
    res = train(cfg, out)
    (res.run_dir / ".lock").write_text(json.dumps({"pid": dead.pid, "what": "train"}))
    train(cfg, out, resume=True)  # no error


def test_train_in_a_locked_run_is_refused_in_one_line(tmp_path, capsys):
    cfg = tiny_config(evaluators=["knn"], epochs=1)
    out = tmp_path / "runs"
    res = train(cfg, out)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from ssl_bench.checkpoint import run_lock
        with run_lock({str(res.run_dir)!r}, "evaluate"):
            print("held", flush=True)
            time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = _main(["train", "--method", "simclr", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1",
                              "--batch-size", "64", "--set", "train_subset=512", "--set", "eval_train_subset=512",
                              "--set", "eval_test_subset=256", "--set", "precision=fp32", "--device", "cpu",
                              "--evaluators", "knn", "--no-progress", "--resume", "--out", str(out)], capsys)
        _assert_one_line_error(code, err)
        assert f"PID {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()


def _append_many(path, k):
    from ssl_bench.pipeline import save_rows

    for i in range(25):
        save_rows(Path(path), [{"run_id": f"w{k}", "value": float(i), "writer": k, "i": i, "pad": "x" * 3000}])


def test_concurrent_writers_lose_no_row(tmp_path):
    import multiprocessing as mp

    path = tmp_path / "results.jsonl"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), k)) for k in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    rows = read_rows([path])
    assert sorted((r["writer"], r["i"]) for r in rows) == [(k, i) for k in range(8) for i in range(25)]


# -- disk faults -----------------------------------------------------------------------------------
def _eval_argv(ck):
    return ["eval", str(ck), "--dataset", "mog2d", "--evaluators", "knn", "--device", "cpu"]


def test_results_jsonl_that_is_a_directory(trained, tmp_path, capsys):
    ck = _copy_ckpt(trained, tmp_path)
    (ck.parent.parent / "results.jsonl").mkdir()
    code, _, err = _main(_eval_argv(ck), capsys)
    _assert_one_line_error(code, err)
    assert "is a directory" in err


def test_read_only_results_and_run_dir(trained, tmp_path, capsys, monkeypatch):
    """Read-only results.jsonl / run directory: one line before anything is computed (as root,
    where modes do not bind, os.access is made to answer as for a normal user)."""
    ck = _copy_ckpt(trained, tmp_path)
    res = ck.parent.parent / "results.jsonl"
    res.write_text("")
    res.chmod(0o444)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == res and m & os.W_OK else real(p, m, **k))
    code, _, err = _main(_eval_argv(ck), capsys)
    _assert_one_line_error(code, err)
    assert "read-only" in err and res.read_text() == ""
    res.chmod(0o644)
    run_dir = ck.parent.parent
    if os.geteuid() == 0:
        monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == run_dir else real(p, m, **k))
    else:
        run_dir.chmod(0o555)
    try:
        code, _, err = _main(_eval_argv(ck), capsys)
    finally:
        run_dir.chmod(0o755)
    _assert_one_line_error(code, err)
    assert "read-only" in err


def test_read_only_output_directory_for_training(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    import ssl_bench.checkpoint as ck

    def denied(run_dir, what):
        raise PermissionError(13, "Permission denied", str(Path(run_dir) / ".lock"))

    if os.geteuid() == 0:  # modes do not bind root: the lock file's creation is refused instead
        monkeypatch.setattr("ssl_bench.trainer.run_lock", denied)
    else:
        out.chmod(0o555)
    code, _, err = _main(["train", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1", "--out", str(out),
                          "--device", "cpu", "--no-progress"], capsys)
    _assert_one_line_error(code, err)
    assert "Permission denied" in err
    assert ck  # imported for the monkeypatch target's module


def test_output_path_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "out"
    f.write_text("mine")
    code, _, err = _main(["train", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1", "--out", str(f),
                          "--device", "cpu", "--no-progress"], capsys)
    _assert_one_line_error(code, err)
    assert f.read_text() == "mine"


def test_rows_that_cannot_be_appended_are_kept_and_named(trained, tmp_path, capsys, monkeypatch):
    """The disk fills between evaluating and appending: the numbers are printed, the rows go to a
    rescue file the one-line error names, and results.jsonl is untouched."""
    import ssl_bench.pipeline as pl

    ck = _copy_ckpt(trained, tmp_path)
    rescue = tmp_path / "rescue"
    rescue.mkdir()
    monkeypatch.setenv("SSL_BENCH_RESCUE_DIR", str(rescue))

    def full(path, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl, "append_rows", full)
    code, out, err = _main(_eval_argv(ck) + ["--json"], capsys)
    _assert_one_line_error(code, err)
    assert "No space left on device" in err and "knn" in json.loads(out)
    (saved,) = rescue.glob("ssl-bench-unsaved-*.jsonl")
    assert str(saved) in err
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    assert {"top1", "top5", "f1_macro"} <= {r["metric"] for r in rows} and {r["evaluator"] for r in rows} == {"knn"}
    assert not (ck.parent.parent / "results.jsonl").exists()


def test_full_disk_via_ulimit_is_one_line_and_keeps_earlier_files(tmp_path):
    out = tmp_path / "runs"
    args = ("train --method simclr --dataset mog2d --preset smoke --epochs 2 --batch-size 64 "
            "--set train_subset=512 --set precision=fp32 --device cpu --no-progress --evaluators knn "
            f"--out {out}")
    r = subprocess.run(f"ulimit -f 400; {sys.executable} -m ssl_bench {args}", shell=True, capture_output=True,
                       text=True, timeout=300)  # 400 KiB: the weights fit, the 1.2 MB resume state does not
    _assert_one_line_error(r.returncode, r.stderr)
    assert "File too large" in r.stderr
    (run_dir,) = out.iterdir()
    read_encoder(run_dir / "checkpoints" / "epoch_0001.safetensors")  # intact
    assert not list(run_dir.rglob("*.tmp"))


# -- data faults -----------------------------------------------------------------------------------
def _idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _fake_fmnist(root: Path, n_train=20, n_test=10, n_train_labels=None) -> Path:
    d = root / "fashion-mnist"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28)))
    _idx(d / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, (n_train_labels or n_train,)))
    _idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28)))
    _idx(d / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, (n_test,)))
    return d


def test_fake_fashion_mnist_loads(tmp_path):
    _fake_fmnist(tmp_path)
    data = load_dataset("fashion-mnist", root=tmp_path)
    assert data.x_train.shape == (20, 1, 28, 28) and len(data.y_test) == 10


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "not_gzip", "empty"])
def test_damaged_gz_is_one_line(tmp_path, damage):
    d = _fake_fmnist(tmp_path)
    p = d / "train-images-idx3-ubyte.gz"
    raw = p.read_bytes()
    p.write_bytes({"truncated": raw[: len(raw) // 2], "corrupt": raw[:20] + bytes(b ^ 0x5A for b in raw[20:]),
                   "not_gzip": b"\x1f\x8bgarbage" * 10, "empty": b""}[damage])
    with pytest.raises(DatasetNotFoundError) as ei:
        load_dataset("fashion-mnist", root=tmp_path)
    assert "\n" not in str(ei.value) and str(p) in str(ei.value)


def test_label_file_shorter_than_images(tmp_path):
    _fake_fmnist(tmp_path, n_train_labels=7)
    with pytest.raises(DatasetNotFoundError, match="7 labels for the 20 images"):
        load_dataset("fashion-mnist", root=tmp_path)


def _png(path: Path, seed=0):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)


@pytest.mark.parametrize("fault", ["empty_folder", "empty_class", "undecodable", "truncated_png"])
def test_imagefolder_faults_are_one_line(tmp_path, fault):
    for split in ("train", "test"):
        for c in ("a", "b"):
            _png(tmp_path / split / c / "0.png")
    if fault == "empty_folder":
        import shutil

        shutil.rmtree(tmp_path / "test")
        (tmp_path / "test").mkdir()
    elif fault == "empty_class":
        (tmp_path / "train" / "b" / "0.png").unlink()
    elif fault == "undecodable":
        (tmp_path / "train" / "a" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    else:
        p = tmp_path / "test" / "a" / "0.png"
        p.write_bytes(p.read_bytes()[:40])
    # an unreadable file is an error of the in-memory variant only: the streamed (default) one skips
    # and counts it (tests/datasets/test_streaming.py); faults of the tree are errors of both
    decode_fault = fault in ("undecodable", "truncated_png")
    for stream in (False,) if decode_fault else (False, True):
        with pytest.raises(DatasetNotFoundError) as ei:
            load_dataset("imagefolder", root=tmp_path, image_size=8, stream=stream)
        assert "\n" not in str(ei.value)


def test_data_faults_reach_the_cli_as_one_line(tmp_path, capsys, monkeypatch):
    d = _fake_fmnist(tmp_path)
    p = d / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-3])
    code, _, err = _main(["train", "--dataset", "fashion-mnist", "--data-root", str(tmp_path), "--preset", "smoke",
                          "--out", str(tmp_path / "runs"), "--device", "cpu"], capsys)
    _assert_one_line_error(code, err)


@pytest.mark.parametrize("exc", [np.linalg.LinAlgError("SVD did not converge"),
                                 torch.linalg.LinAlgError("cholesky: the input is not positive-definite"),
                                 EOFError("Ran out of input"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")])
def test_library_errors_reach_the_user_as_one_line(exc, bad_files, capsys, monkeypatch):
    import ssl_bench.pipeline as pl

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(pl, "run_evaluators", boom)
    code, _, err = _main(["eval-embeddings", str(bad_files["good_npz"]), "--evaluators", "rankme"], capsys)
    _assert_one_line_error(code, err)
    assert type(exc).__name__ in err


def test_an_unexpected_bug_still_shows_its_traceback(bad_files, capsys, monkeypatch):
    """Only user-facing faults become one line: a programming error keeps its trace."""
    import ssl_bench.pipeline as pl

    def bug(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(pl, "run_evaluators", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["eval-embeddings", str(bad_files["good_npz"]), "--evaluators", "rankme"])
