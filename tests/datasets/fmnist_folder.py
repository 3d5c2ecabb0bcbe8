"""Fashion-MNIST written as an image folder of PNG files, for the streaming-path tests.

``write_fmnist_folder(root)`` writes ``root/{train,test}/<label>/<index>.png`` (60k + 10k grey
28x28 PNGs, zlib level 1, two processes: about 10 s on a shared 2-core CPU). ``class_major(data)`` is the in-memory
Fashion-MNIST in the order an image folder lists those files (by class, then by index), so the
in-memory and the streamed path can be compared batch for batch.
"""
from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

FMNIST_MEAN, FMNIST_STD = [0.2860], [0.3530]
#: The training config the streaming tests compare with: 8 steps of 64 images, 2 decoding workers.
BASE = dict(method="simclr", preset="smoke", epochs=1, batch_size=64, train_subset=512, eval_train_subset=5000,
            eval_test_subset=1000, progress=False, device="cpu", precision="fp32", num_workers=2)

#: The DDP comparison: SGD (as tests/harness/test_distributed.py), 2 steps, one decoding worker per rank.
DDP_CONFIG = dict(optimizer="sgd", num_workers=1, train_subset=128)


def streamed(root: Path):
    """The PNG folder with Fashion-MNIST's statistics, so both paths normalise alike."""
    from ssl_bench.datasets import load_dataset

    return load_dataset("imagefolder", root=root, image_size=28, channels=1, mean=FMNIST_MEAN, std=FMNIST_STD)


def cfg(**kw):
    from ssl_bench.config import RunConfig

    return RunConfig(**{"dataset": "imagefolder", **BASE, **kw})


def png_bytes(img: np.ndarray) -> bytes:
    """A grey 8-bit PNG of ``img`` (H, W) uint8, zlib level 1 (2.5x faster than PIL's writer here)."""
    h, w = img.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))  # filter type 0 per row
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def _write(args) -> int:
    folder, x, y, idx = args
    for img, label, i in zip(x, y, idx, strict=True):
        with open(os.path.join(folder, str(int(label)), f"{int(i):05d}.png"), "wb") as f:
            f.write(png_bytes(img))
    return len(idx)


def write_fmnist_folder(root: Path, n_train: int | None = None, n_test: int | None = None, workers: int = 2) -> Path:
    """The first ``n_train`` / ``n_test`` images of each split (all by default) as PNG files."""
    from ssl_bench.datasets import load_dataset

    data = load_dataset("fashion-mnist")
    jobs = []
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        n = n_train if split == "train" else n_test
        x, y = x[:n, 0].numpy(), y[:n].numpy()
        for c in range(10):
            (root / split / str(c)).mkdir(parents=True, exist_ok=True)
        idx = np.arange(len(x))
        for part in np.array_split(idx, workers * 4):
            jobs.append((str(root / split), x[part], y[part], part))
    with ProcessPoolExecutor(workers) as ex:
        assert sum(ex.map(_write, jobs)) == sum(len(j[3]) for j in jobs)
    return root


def class_major(data, n_train: int | None = None, n_test: int | None = None):
    """In-memory Fashion-MNIST (its first n images) in image-folder order: stably sorted by label."""
    def sort(x, y, n):
        x, y = x[:n], y[:n]
        order = torch.from_numpy(np.argsort(y.numpy(), kind="stable"))
        return x[order], y[order]

    xtr, ytr = sort(data.x_train, data.y_train, n_train)
    xte, yte = sort(data.x_test, data.y_test, n_test)
    return replace(data, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
