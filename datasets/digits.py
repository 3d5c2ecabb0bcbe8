"""scikit-learn's 8x8 handwritten digits: always available (no files)."""

from __future__ import annotations

import os

import numpy as np
import torch

from ssl_bench.data import Data, channel_stats
from ssl_bench.kinds import DataKind
from ssl_bench.registry import register_dataset


@register_dataset("digits", image_size=8)
def digits(root: str | os.PathLike | None = None) -> Data:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), split 80/20 (seed 0)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(np.round(d.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_tr = int(0.8 * len(x))
    tr, te = perm[:n_tr].sort().values, perm[n_tr:].sort().values
    mean, std = channel_stats(x[tr])
    return Data("digits", x[tr], y[tr], x[te], y[te], 10, DataKind.IMAGE, mean, std)
