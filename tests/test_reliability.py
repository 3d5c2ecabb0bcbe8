"""Reliability and security: data files never execute code, faults are one-line errors."""
import json
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
