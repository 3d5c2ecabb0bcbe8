"""Issue 35 items 4 and 5: a data root that is given is strict (every file from there, or one
clear error), and STL-10's label files are checked against their images."""

import gzip

import numpy as np
import pytest
from stl10_files import write_stl10

from ssl_bench.data import load_dataset
from ssl_bench.errors import DatasetNotFoundError

FILES = {
    "train-images-idx3-ubyte": (20, 28, 28),
    "train-labels-idx1-ubyte": (20,),
    "t10k-images-idx3-ubyte": (10, 28, 28),
    "t10k-labels-idx1-ubyte": (10,),
}


def _idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _fmnist(folder, only=None, labels=None):
    """Fake Fashion-MNIST IDX files in ``folder`` (those named in ``only``, else all four)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, shape in FILES.items():
        if only is None or name in only:
            a = rng.integers(0, 10 if len(shape) == 1 else 256, shape)
            _idx(folder / f"{name}.gz", a if labels is None or len(shape) > 1 else np.full(shape, labels))
    return folder


@pytest.fixture
def system_copy(tmp_path, monkeypatch):
    """A complete system copy (the place a loose root used to fall back to), with SSL_BENCH_DATA unset."""
    import ssl_bench.datasets.fashion_mnist as fm

    d = _fmnist(tmp_path / "system")
    monkeypatch.setattr(fm, "FMNIST_SYSTEM_DIR", str(d))
    monkeypatch.delenv("SSL_BENCH_DATA", raising=False)
    assert load_dataset("fashion-mnist").info["source"] == str(d)
    return d


def _one_line(exc_info, *words):
    msg = str(exc_info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_a_root_with_one_label_file_never_mixes_with_the_system_copy(system_copy, tmp_path):
    root = _fmnist(tmp_path / "mine", only={"train-labels-idx1-ubyte"}, labels=0)
    with pytest.raises(DatasetNotFoundError) as ei:
        load_dataset("fashion-mnist", root=root)
    _one_line(ei, str(root), "t10k-images-idx3-ubyte.gz", "same folder")


def test_an_empty_root_does_not_fall_back(system_copy, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError) as ei:
        load_dataset("fashion-mnist", root=tmp_path / "empty")
    _one_line(ei, str(tmp_path / "empty"), "not found")


@pytest.mark.parametrize("via", ["root", "env"])
@pytest.mark.parametrize("what", ["missing", "file"])
def test_a_root_that_is_no_folder_is_an_error(system_copy, tmp_path, monkeypatch, via, what):
    bad = tmp_path / "nope"
    if what == "file":
        bad.write_text("not a folder")
    if via == "env":
        monkeypatch.setenv("SSL_BENCH_DATA", str(bad))
    with pytest.raises(DatasetNotFoundError) as ei:
        load_dataset("fashion-mnist", root=bad if via == "root" else None)
    _one_line(
        ei,
        str(bad),
        "does not exist" if what == "missing" else "is a file",
        "--data-root" if via == "root" else "SSL_BENCH_DATA",
    )


def test_cifar_root_that_is_a_file_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("SSL_BENCH_DATA", str(tmp_path / "f"))
    with pytest.raises(DatasetNotFoundError, match="SSL_BENCH_DATA.*is a file"):
        load_dataset("cifar10")


def test_a_complete_root_is_used(system_copy, tmp_path, monkeypatch):
    mine = _fmnist(tmp_path / "mine" / "fashion-mnist", labels=3)
    assert load_dataset("fashion-mnist", root=tmp_path / "mine").y_train.tolist() == [3] * 20
    monkeypatch.setenv("SSL_BENCH_DATA", str(tmp_path / "mine"))
    assert load_dataset("fashion-mnist").info["source"] == str(mine)


def test_cli_with_a_missing_data_root_is_one_line(system_copy, tmp_path, capsys):
    from ssl_bench import cli

    code = cli.main(
        [
            "train",
            "--dataset",
            "fashion-mnist",
            "--data-root",
            str(tmp_path / "nope"),
            "--preset",
            "smoke",
            "--out",
            str(tmp_path / "runs"),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err, err
    assert not (tmp_path / "runs").exists()


# -- STL-10 labels ---------------------------------------------------------------------------------
@pytest.mark.parametrize("label", [0, 200])
def test_stl10_label_out_of_range_names_the_file(tmp_path, label):
    write_stl10(tmp_path)
    y = tmp_path / "stl10_binary" / "train_y.bin"
    raw = np.fromfile(y, dtype=np.uint8)
    raw[2] = label
    raw.tofile(y)
    with pytest.raises(DatasetNotFoundError) as ei:
        load_dataset("stl10", root=tmp_path, image_size=32)
    _one_line(ei, str(y), f"found {label} at position 2")


@pytest.mark.parametrize("split, n", [("train", 2), ("test", 5)])
def test_stl10_label_count_must_match_the_images(tmp_path, split, n):
    write_stl10(tmp_path)
    y = tmp_path / "stl10_binary" / f"{split}_y.bin"
    np.ones(n, dtype=np.uint8).tofile(y)
    with pytest.raises(DatasetNotFoundError) as ei:
        load_dataset("stl10", root=tmp_path, image_size=32)
    _one_line(ei, str(y), f"holds {n} labels for the {4 if split == 'train' else 2} images")
