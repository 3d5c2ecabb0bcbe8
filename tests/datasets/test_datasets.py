"""Datasets: real Fashion-MNIST, always-there digits/mog2d, and tiny on-disk fixtures for the
torchvision-backed loaders (nothing is ever downloaded)."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from conftest import needs_fmnist
from stl10_files import write_stl10
from ssl_bench.datasets import Data, load_dataset, read_idx
from ssl_bench.errors import DatasetNotFoundError


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.tobytes())


def test_idx_reader_and_fmnist_from_env_root(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    xtr, xte = rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 256, (10, 28, 28))
    ytr, yte = rng.integers(0, 10, 20), rng.integers(0, 10, 10)
    d = tmp_path / "fashion-mnist"
    d.mkdir()
    for name, a in [("train-images-idx3-ubyte", xtr), ("train-labels-idx1-ubyte", ytr),
                    ("t10k-images-idx3-ubyte", xte), ("t10k-labels-idx1-ubyte", yte)]:
        _write_idx(d / f"{name}.gz", a)
    assert np.array_equal(read_idx(d / "train-images-idx3-ubyte.gz"), xtr)
    monkeypatch.setenv("SSL_BENCH_DATA", str(tmp_path))
    data = load_dataset("fashion-mnist")
    assert data.x_train.shape == (20, 1, 28, 28) and data.x_train.dtype == torch.uint8
    assert torch.equal(data.y_test, torch.from_numpy(yte.astype(np.int64)))


def test_truncated_idx_is_a_clear_error(tmp_path):
    p = tmp_path / "x.gz"
    with gzip.open(p, "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, 10, 28, 28) + b"\0" * 100)
    with pytest.raises(DatasetNotFoundError, match="truncated"):
        read_idx(p)


@needs_fmnist
def test_real_fashion_mnist():
    d = load_dataset("fashion-mnist")
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert d.num_classes == 10 and torch.bincount(d.y_train).tolist() == [6000] * 10
    assert abs(d.to_float(d.x_train[:5000]).mean().item() - d.mean[0]) < 0.01


def test_missing_fmnist_names_the_install_command(tmp_path, monkeypatch):
    import ssl_bench.datasets.fashion_mnist as fmnist

    monkeypatch.setattr(fmnist, "FMNIST_SYSTEM_DIR", str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()  # a root that does not exist is an error of its own (test_data_roots.py)
    monkeypatch.setenv("SSL_BENCH_DATA", str(tmp_path / "empty"))
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion-mnist")
    assert "apt-get install dataset-fashion-mnist" in str(err.value) and "\n" not in str(err.value)


def test_digits_and_mog2d_and_subset():
    d = load_dataset("digits")
    assert d.x_train.shape[1:] == (1, 8, 8) and len(d.x_train) + len(d.x_test) == 1797
    m = load_dataset("mog2d")
    assert m.kind == "vector" and m.x_train.shape == (4096, 2) and m.num_classes == 8
    # label = component: each point is nearest to its own centre
    centres = torch.tensor(m.info["centers"])
    assert (torch.cdist(m.x_train, centres).argmin(1) == m.y_train).float().mean() > 0.95
    s1, s2 = m.subset(100, 50, seed=3), m.subset(100, 50, seed=3)
    assert torch.equal(s1.x_train, s2.x_train) and len(s1.x_test) == 50


def _cifar_fixture(root, n=6):
    rng = np.random.default_rng(0)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, n).tolist()}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def test_cifar10_from_fixture(tmp_path):
    _cifar_fixture(tmp_path)
    d = load_dataset("cifar10", root=tmp_path)
    assert d.x_train.shape == (30, 3, 32, 32) and d.x_test.shape == (6, 3, 32, 32) and d.num_classes == 10
    assert len(d.mean) == 3


def test_cifar100_fixture_and_missing(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for name, n in [("train", 8), ("test", 4)]:
        with open(d / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": rng.integers(0, 100, n).tolist()}, f)
    with open(d / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)
    data = load_dataset("cifar100", root=tmp_path)
    assert data.x_train.shape == (8, 3, 32, 32) and data.num_classes == 100
    with pytest.raises(DatasetNotFoundError, match="download=True"):  # a root without cifar-10-batches-py/
        load_dataset("cifar10", root=tmp_path)


def test_stl10_from_fixture(tmp_path):
    write_stl10(tmp_path)
    data = load_dataset("stl10", root=tmp_path, image_size=32)
    assert data.x_train.shape == (4, 3, 32, 32) and data.y_train.min() >= 0 and data.y_train.max() <= 9


def test_imagefolder_from_fixture(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    for split, n in [("train", 3), ("test", 2)]:
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    data = load_dataset("imagefolder", root=tmp_path, image_size=16)
    assert data.x_train.shape == (6, 3, 16, 16) and data.y_test.tolist() == [0, 0, 1, 1]
    assert data.info["classes"] == ["cat", "dog"]
    with pytest.raises(DatasetNotFoundError, match="train"):
        load_dataset("imagefolder", root=tmp_path / "train" / "cat")


def test_normalisation_is_written_once():
    """Data.normalize (embeddings, evaluators) and Data.normalizer (the trainer, statistics put on
    the device once) are one computation: (x - mean) / std per channel, the identity for vectors."""
    x = torch.rand(4, 3, 5, 5)
    d = Data("t", torch.zeros(2, 3, 5, 5, dtype=torch.uint8), torch.zeros(2).long(), torch.zeros(2, 3, 5, 5,
             dtype=torch.uint8), torch.zeros(2).long(), 2, "image", (0.1, 0.2, 0.3), (0.5, 0.25, 2.0))
    expected = (x - torch.tensor(d.mean).view(1, 3, 1, 1)) / torch.tensor(d.std).view(1, 3, 1, 1)
    assert torch.equal(d.normalize(x), expected) and torch.equal(d.normalizer("cpu")(x), expected)
    v = load_dataset("mog2d", n_train=8, n_test=8)
    assert v.normalize(v.x_train) is v.x_train and v.normalizer("cpu")(v.x_train) is v.x_train
