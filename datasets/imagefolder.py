"""Any ``ROOT/{train,test|val}/<class>/<image>`` tree, streamed from disk or decoded into memory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ssl_bench.data import Data, channel_stats, folder_options, streamed_folder
from ssl_bench.errors import ConfigError, DatasetNotFoundError
from ssl_bench.kinds import DataKind
from ssl_bench.registry import register_dataset


def _images_hwc_to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous()


@register_dataset("imagefolder")
def imagefolder(
    root: str | os.PathLike | None = None,
    image_size: int = 64,
    stream: bool = True,
    channels: int = 3,
    mean: list | None = None,
    std: list | None = None,
    stats_sample: int = 1000,
) -> Data:
    """Any ``ROOT/{train,test|val}/<class>/<image>`` tree (any format Pillow reads), resized to
    ``image_size``. Streamed by default: files stay on disk and DataLoader workers decode them,
    an unreadable file is skipped and counted. ``stream=False`` decodes everything into memory
    at load (small folders; an unreadable file is then an error). ``channels`` 1 (grey) or 3;
    ``mean``/``std`` default to the statistics of ``stats_sample`` training images."""
    from PIL import Image
    from torchvision import datasets as tvd

    if not isinstance(stream, bool):
        raise ConfigError(f"imagefolder option 'stream' must be true or false, got {stream!r}")
    base, test_dir = folder_options("imagefolder", root, image_size, channels, mean, std, stats_sample)
    if stream:
        return streamed_folder("imagefolder", base, test_dir, image_size, channels, mean, std, stats_sample)

    def load(folder: Path, classes: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        try:
            ds = tvd.ImageFolder(str(folder))
        except (FileNotFoundError, OSError) as exc:  # no class folder, or a class without images
            raise DatasetNotFoundError(f"imagefolder {folder}: {' '.join(str(exc).split())}") from None
        if classes is not None and ds.classes != classes:
            raise DatasetNotFoundError(f"imagefolder: class folders differ between train and {folder.name}")
        xs = []
        for path, _ in ds.samples:
            try:
                with Image.open(path) as im:
                    rgb = im.convert("RGB" if channels == 3 else "L").resize(
                        (image_size, image_size), Image.Resampling.BILINEAR
                    )
                    xs.append(np.asarray(rgb).reshape(image_size, image_size, channels))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                # PIL.UnidentifiedImageError is an OSError; truncated files raise OSError
                raise DatasetNotFoundError(
                    f"imagefolder: cannot decode {path} ({type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:200]}); remove or replace it"
                ) from None
        if not xs:
            raise DatasetNotFoundError(f"imagefolder {folder}: no images")
        return _images_hwc_to_tensor(np.stack(xs)), torch.tensor(ds.targets).long(), ds.classes

    xtr, ytr, classes = load(base / "train")
    xte, yte, _ = load(test_dir, classes)
    m, sd = channel_stats(xtr) if mean is None or std is None else (tuple(mean), tuple(std))
    return Data("imagefolder", xtr, ytr, xte, yte, len(classes), DataKind.IMAGE, m, sd, info={"classes": classes})
