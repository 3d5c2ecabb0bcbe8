"""STL-10 from its binary files (`stl10_binary/`, never downloaded here); the 100k unlabelled
images are streamed from disk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ssl_bench.data import Data, channel_stats, data_root, dataset_missing, verify_checksum
from ssl_bench.errors import ConfigError, DatasetNotFoundError
from ssl_bench.kinds import DataKind
from ssl_bench.registry import register_dataset
from ssl_bench.streaming import BinImages
from ssl_bench.views import PAPER_COLOR_VIEWS

STL10_SHAPE = (3, 96, 96)
#: the ImageNet recipe of SimCLR / BYOL at 96 px (STL-10): colour jitter, grayscale, crops of 8-100 %
#: and Gaussian blur at p 0.5 (sigma 0.1-2 px, kernel 10 % of the side); methods and configs override it
STL10_VIEWS = {**PAPER_COLOR_VIEWS, "blur_p": 0.5}
STL10_UNLABELED = 100_000


@register_dataset("stl10", image_size=96)
def stl10(root: str | os.PathLike | None = None, image_size: int | None = None, pretrain: str = "train") -> Data:
    """STL-10 (`stl10_binary/`), optionally resized. The labelled train/test splits are held in
    memory (evaluation); ``pretrain="unlabeled"`` trains on the 100k unlabelled images, streamed
    from ``unlabeled_X.bin`` through a memory map (:class:`~ssl_bench.streaming.BinImages`)."""
    from torchvision import datasets as tvd

    if pretrain not in ("train", "unlabeled"):
        raise ConfigError(f"stl10 option 'pretrain' must be 'train' or 'unlabeled', got {pretrain!r}")
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or not 8 <= image_size <= 1024
    ):
        raise ConfigError(f"stl10 option 'image_size' must be an integer in [8, 1024], got {image_size!r}")
    base = data_root(root, default="data", must_exist=False)  # not found: the error says how to get it

    class _NoChecksum(tvd.STL10):  # labelled splits only: the unlabelled 2.5 GB file is streamed
        def _check_integrity(self) -> bool:
            return all(
                (Path(self.root) / self.base_folder / f).is_file()
                for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")
            )

    if not (base / tvd.STL10.base_folder).is_dir():
        raise dataset_missing(
            "STL-10",
            base,
            'download it once with `python -c "import torchvision; '
            f"torchvision.datasets.STL10('{base}', download=True)\"`",
        )
    for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"):
        if (base / tvd.STL10.base_folder / f).is_file():
            verify_checksum(base / tvd.STL10.base_folder / f)
    try:
        tr, te = _NoChecksum(str(base), split="train"), _NoChecksum(str(base), split="test")
    except (RuntimeError, OSError, ValueError) as exc:
        raise dataset_missing("STL-10", base, f"incomplete files ({exc})") from exc
    for split, ds in (("train", tr), ("test", te)):
        _check_labels(base / tvd.STL10.base_folder, split, len(ds.data))
    xtr, xte = torch.from_numpy(tr.data.copy()), torch.from_numpy(te.data.copy())
    if image_size:
        xtr, xte = _resize_uint8(xtr, image_size), _resize_uint8(xte, image_size)
    mean, std = channel_stats(xtr)
    unlabeled: BinImages | None = None
    info: dict = {"pretrain": pretrain}
    if pretrain == "unlabeled":
        path = base / tvd.STL10.base_folder / "unlabeled_X.bin"
        record = int(np.prod(STL10_SHAPE))
        size = path.stat().st_size if path.is_file() else -1
        if size <= 0 or size % record:
            raise dataset_missing(
                "STL-10 unlabeled", base, f"{path} is missing or not a whole number of 3x96x96 images ({size} bytes)"
            )
        verify_checksum(path)  # (2.7 GB: about 10 s, only when unlabeled_X.bin.sha256 is there)
        unlabeled = BinImages(path, size // record, STL10_SHAPE, image_size or 96, transpose=True)
        info["unlabeled"] = {"file": str(path), "images": size // record}
    return Data(
        "stl10",
        xtr,
        torch.from_numpy(tr.labels.astype(np.int64)),
        xte,
        torch.from_numpy(te.labels.astype(np.int64)),
        10,
        DataKind.IMAGE,
        mean,
        std,
        info=info,
        x_pretrain=unlabeled,
        views=dict(STL10_VIEWS),
    )


def _check_labels(folder: Path, split: str, n_images: int) -> None:
    """One label per image of ``{split}_X.bin``, each a class 1..10 (as ``{split}_y.bin`` stores
    them); else a one-line error naming the label file: no row is ever computed from bad labels."""
    path = folder / f"{split}_y.bin"
    y = np.fromfile(path, dtype=np.uint8)
    if len(y) != n_images:
        raise DatasetNotFoundError(
            f"{path} holds {len(y)} labels for the {n_images} images of {folder / f'{split}_X.bin'}: "
            "the files do not belong together (or one is cut)"
        )
    bad = (y < 1) | (y > 10)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetNotFoundError(
            f"{path}: labels must be classes 1..10, found {int(y[i])} at position {i} "
            f"({int(bad.sum())} of {len(y)} out of range)"
        )


def _resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    import torch.nn.functional as F

    out = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)
