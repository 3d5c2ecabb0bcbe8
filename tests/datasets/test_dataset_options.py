"""Dataset loaders: checksums next to dataset files are verified, unknown options are refused,
the data kind is an enum that still equals its old string."""
from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest

from ssl_bench.datasets import load_dataset, verify_checksum
from ssl_bench.errors import ConfigError, DatasetNotFoundError
from ssl_bench.kinds import DataKind


def _idx(path, arr: np.ndarray) -> None:
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes())


def _fmnist(root):
    rng = np.random.default_rng(0)
    d = root / "fashion-mnist"
    d.mkdir(parents=True)
    for split, n in (("train", 20), ("t10k", 10)):
        _idx(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _idx(d / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    return d


def test_checksum_next_to_a_dataset_file_is_verified(tmp_path):
    d = _fmnist(tmp_path)
    f = d / "train-labels-idx1-ubyte.gz"
    assert verify_checksum(f) is False  # no checksum file: nothing to verify
    good = hashlib.sha256(f.read_bytes()).hexdigest()
    (d / (f.name + ".sha256")).write_text(f"{good}  {f.name}\n")  # sha256sum's format
    assert verify_checksum(f) is True
    assert len(load_dataset("fashion-mnist", root=tmp_path).x_train) == 20
    (d / (f.name + ".sha256")).write_text("0" * 64 + "\n")
    with pytest.raises(DatasetNotFoundError, match="does not match its checksum"):
        load_dataset("fashion-mnist", root=tmp_path)
    (d / (f.name + ".sha256")).write_text("not a digest\n")
    with pytest.raises(DatasetNotFoundError, match="SHA-256"):
        load_dataset("fashion-mnist", root=tmp_path)


@pytest.mark.parametrize("name", ["fashion-mnist", "digits", "mog2d", "cifar10", "imagefolder", "imagenet", "stl10"])
def test_loaders_refuse_unknown_options(name, tmp_path):
    from ssl_bench.registry import DATASETS

    with pytest.raises(ConfigError, match="no option"):
        load_dataset(name, root=tmp_path, no_such_option=1)
    with pytest.raises(TypeError):  # called directly, too: no **kwargs swallows a typo
        DATASETS.get(name)(root=tmp_path, no_such_option=1)


def test_data_kind_is_an_enum_equal_to_its_string():
    data = load_dataset("mog2d", n_train=16, n_test=8)
    assert data.kind is DataKind.VECTOR and data.kind == "vector" and f"{data.kind}" == "vector"
    assert load_dataset("digits").kind is DataKind.IMAGE
