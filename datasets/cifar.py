"""CIFAR-10 and CIFAR-100 from their python pickle batches, read with :func:`safe_unpickle`
(never downloaded here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_bench.data import Data, channel_stats, data_root, dataset_missing, verify_checksum
from ssl_bench.errors import DatasetNotFoundError
from ssl_bench.kinds import DataKind
from ssl_bench.registry import register_dataset
from ssl_bench.views import PAPER_COLOR_VIEWS

#: the CIFAR recipe of SimCLR (appendix B.9: its colour jitter and grayscale, crops of 8-100 %, no
#: Gaussian blur at 32 px), as solo-learn's and lightly's CIFAR boards use it; methods and configs
#: override it (ssl_bench.views.default_augment)
CIFAR_VIEWS = {**PAPER_COLOR_VIEWS, "blur_p": 0.0}

# CIFAR's python batches are pickles. A pickle can name any callable, so they are read with an
# unpickler that admits only what the real files contain: numpy arrays (and their dtypes), lists,
# dicts, strings and numbers. Anything else (os.system, builtins.eval, ...) is refused before it
# is looked up, so a crafted folder cannot run code.
_SAFE_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell a bytes object
}
_CIFAR = {  # folder, training batches, test batches, label key, meta file, class-name key, classes
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "labels",
        "batches.meta",
        "label_names",
        10,
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", "meta", "fine_label_names", 100),
}


def safe_unpickle(path: Path) -> Any:  # whatever the pickle holds (dicts of arrays for CIFAR)
    """Load a data pickle (CIFAR batches) admitting only numpy arrays and plain containers."""
    import pickle

    class _Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in _SAFE_PICKLE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"refused global {module}.{name}")

    try:
        with open(path, "rb") as f:
            return _Restricted(f, encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
    ) as exc:
        raise DatasetNotFoundError(
            f"{path} is not a CIFAR data file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})"
        ) from None


def _cifar_batches(folder: Path, files: list[str], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in files:
        verify_checksum(folder / name)
        d = safe_unpickle(folder / name)
        if not isinstance(d, dict):
            raise DatasetNotFoundError(f"{folder / name} is not a CIFAR batch (holds a {type(d).__name__})")
        d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
        x, y = d.get("data"), d.get(label_key)
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
            raise DatasetNotFoundError(f"{folder / name}: 'data' must be a uint8 array of shape (N, 3072)")
        y = np.asarray(y if y is not None else [], dtype=np.int64) if isinstance(y, (list, np.ndarray)) else None
        if y is None or y.shape != (len(x),):
            raise DatasetNotFoundError(f"{folder / name}: {label_key!r} must hold one label per image")
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _cifar(kind: str, root: str | os.PathLike | None) -> Data:
    base = data_root(root, default="data", must_exist=False)  # not found: the error says how to get it
    folder_name, train_files, test_files, label_key, meta_file, names_key, n_classes = _CIFAR[kind]
    folder = base / folder_name
    if not folder.is_dir():
        raise dataset_missing(
            kind.upper(),
            base,
            f'download it once with `python -c "import torchvision; '
            f"torchvision.datasets.{'CIFAR10' if kind == 'cifar10' else 'CIFAR100'}"
            f"('{base}', download=True)\"`",
        )
    missing = [f for f in train_files + test_files + [meta_file] if not (folder / f).is_file()]
    if missing:
        raise dataset_missing(kind.upper(), base, f"incomplete files in {folder} (missing {', '.join(missing)})")
    xtr, ytr = _cifar_batches(folder, train_files, label_key)
    xte, yte = _cifar_batches(folder, test_files, label_key)
    for split, y in (("train", ytr), ("test", yte)):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise DatasetNotFoundError(
                f"{folder}: {split} labels must lie in [0, {n_classes}), found {int(y.min())}..{int(y.max())}"
            )
    xtr_t, xte_t = torch.from_numpy(np.ascontiguousarray(xtr)), torch.from_numpy(np.ascontiguousarray(xte))
    mean, std = channel_stats(xtr_t)
    return Data(
        kind,
        xtr_t,
        torch.from_numpy(ytr),
        xte_t,
        torch.from_numpy(yte),
        n_classes,
        DataKind.IMAGE,
        mean,
        std,
        views=dict(CIFAR_VIEWS),
    )


@register_dataset("cifar10", image_size=32)
def cifar10(root: str | os.PathLike | None = None) -> Data:
    """CIFAR-10 (python pickle batches, `cifar-10-batches-py/`)."""
    return _cifar("cifar10", root)


@register_dataset("cifar100", image_size=32)
def cifar100(root: str | os.PathLike | None = None) -> Data:
    """CIFAR-100 (python pickle batches, `cifar-100-python/`)."""
    return _cifar("cifar100", root)
