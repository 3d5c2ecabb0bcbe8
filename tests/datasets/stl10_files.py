"""STL-10 in its binary layout (``stl10_binary/{train,test,unlabeled}_X.bin``, ``*_y.bin``), written
from a seeded generator for the loader tests of test_datasets.py and test_streaming.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_stl10(root: Path, n_unlabeled: int = 0, seed: int = 2) -> np.ndarray | None:
    """4 training and 2 test images of 3x96x96 with labels 1..10 (STL-10 counts from 1) under
    ``root/stl10_binary``, and ``n_unlabeled`` unlabeled images when asked; returns those (as
    stored: column-major per image) or None."""
    rng = np.random.default_rng(seed)
    d = root / "stl10_binary"
    d.mkdir()
    for split, n in [("train", 4), ("test", 2)]:
        rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(d / f"{split}_X.bin")
        rng.integers(1, 11, n, dtype=np.uint8).tofile(d / f"{split}_y.bin")
    if not n_unlabeled:
        return None
    raw = rng.integers(0, 256, (n_unlabeled, 3, 96, 96), dtype=np.uint8)
    raw.tofile(d / "unlabeled_X.bin")
    return raw
