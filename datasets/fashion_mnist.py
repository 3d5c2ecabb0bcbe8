"""Fashion-MNIST (Xiao et al. 2017), read from its IDX files (:func:`read_idx`)."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ssl_bench.data import Data, data_root, verify_checksum
from ssl_bench.errors import DatasetNotFoundError
from ssl_bench.kinds import DataKind
from ssl_bench.registry import register_dataset

FMNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


MAX_IDX_BYTES = 1 << 31


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the MNIST family's format."""
    import zlib

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetNotFoundError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'unexpected end of data'}); "
            "reinstall or download it again"
        ) from None
    except OSError as exc:
        raise DatasetNotFoundError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_IDX_BYTES:
        raise DatasetNotFoundError(f"{path} is larger than {MAX_IDX_BYTES >> 20} MiB: not an MNIST-family file")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetNotFoundError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DatasetNotFoundError(f"{path}: only uint8 IDX files are supported (type 0x{dtype_code:02x})")
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DatasetNotFoundError(f"{path} is truncated: its header is incomplete")
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DatasetNotFoundError(f"{path} is truncated: expected {int(np.prod(shape))} values, got {data.size}")
    return data.reshape(shape)


def _find_idx(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for cand in (d / f"{stem}.gz", d / stem):
            if cand.is_file():
                return cand
    return None


def _idx_paths(base: Path | None) -> dict[str, Path]:
    """The four IDX files, all from one folder: under a given root (``base/fashion-mnist`` or
    ``base``) and nowhere else, else in the system location. A folder holding some of them but not
    all is an error naming what is missing: files are never mixed with those of another place."""
    dirs = [base / "fashion-mnist", base] if base else [Path(FMNIST_SYSTEM_DIR)]
    for d in dirs:
        paths = {k: _find_idx([d], v) for k, v in FMNIST_FILES.items()}
        missing = [FMNIST_FILES[k] + ".gz" for k, p in paths.items() if p is None]
        if not missing:
            return {k: p for k, p in paths.items() if p is not None}
        if len(missing) < len(FMNIST_FILES):
            raise DatasetNotFoundError(
                f"Fashion-MNIST in {d} is incomplete: missing {', '.join(missing)} "
                "(all four IDX files must come from the same folder)"
            )
    where = ", ".join(str(d) for d in dirs)
    fix = (
        f"put the four IDX files there, or leave --data-root and SSL_BENCH_DATA unset to use {FMNIST_SYSTEM_DIR} "
        "(`sudo apt-get install dataset-fashion-mnist`)"
        if base
        else "run `sudo apt-get install dataset-fashion-mnist` or set SSL_BENCH_DATA to a folder with the IDX files"
    )
    raise DatasetNotFoundError(
        f"Fashion-MNIST not found (looked in {where}; missing {FMNIST_FILES['train_x']}.gz): {fix}"
    )


@register_dataset("fashion-mnist", image_size=28)
def fashion_mnist(root: str | os.PathLike | None = None) -> Data:
    """Fashion-MNIST (Xiao et al. 2017): 60k/10k 28x28 grey images, 10 classes."""
    paths = _idx_paths(data_root(root))
    for p in paths.values():
        verify_checksum(p)
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1:
            raise DatasetNotFoundError(
                f"{paths[split + '_x']} / {paths[split + '_y']}: expected N images (N, H, W) "
                f"and N labels, got shapes {x.shape} and {y.shape}"
            )
        if len(x) != len(y) or not len(x):
            raise DatasetNotFoundError(
                f"{paths[split + '_y']} holds {len(y)} labels for the {len(x)} images of "
                f"{paths[split + '_x']}: the files do not belong together (or one is cut)"
            )
        if y.max() >= 10:
            raise DatasetNotFoundError(f"{paths[split + '_y']}: labels must lie in [0, 10), found up to {int(y.max())}")
    xtr = torch.from_numpy(arrays["train_x"].copy()).unsqueeze(1)
    ytr = torch.from_numpy(arrays["train_y"].astype(np.int64))
    xte = torch.from_numpy(arrays["test_x"].copy()).unsqueeze(1)
    yte = torch.from_numpy(arrays["test_y"].astype(np.int64))
    return Data(
        "fashion-mnist",
        xtr,
        ytr,
        xte,
        yte,
        10,
        DataKind.IMAGE,
        (0.2860,),
        (0.3530,),
        info={"source": str(paths["train_x"].parent)},
    )
