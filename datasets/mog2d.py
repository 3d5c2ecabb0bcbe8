"""A 2-D mixture of Gaussians on a ring: synthetic vectors, always available (no files)."""

from __future__ import annotations

import os

import torch

from ssl_bench.data import Data
from ssl_bench.errors import ConfigError
from ssl_bench.kinds import DataKind
from ssl_bench.registry import register_dataset


@register_dataset("mog2d")
def mog2d(
    root: str | os.PathLike | None = None,
    n_components: int = 8,
    n_train: int = 4096,
    n_test: int = 1024,
    radius: float = 4.0,
    sigma: float = 0.5,
    seed: int = 0,
) -> Data:
    """2-D mixture of Gaussians: ``n_components`` on a ring, label = component."""
    for k, v, lo, hi in (
        ("n_components", n_components, 1, 10_000),
        ("n_train", n_train, 2, 10_000_000),
        ("n_test", n_test, 2, 10_000_000),
        ("seed", seed, 0, 2**63 - 1),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(f"mog2d option {k!r} must be an integer in [{lo}, {hi}], got {v!r}")
    for k, num in (("radius", radius), ("sigma", sigma)):
        if isinstance(num, bool) or not isinstance(num, (int, float)) or not 0 <= num < 1e6:
            raise ConfigError(f"mog2d option {k!r} must be a number in [0, 1e6), got {num!r}")
    g = torch.Generator().manual_seed(seed)
    angles = torch.arange(n_components, dtype=torch.float32) * (2 * torch.pi / n_components)
    centers = radius * torch.stack([angles.cos(), angles.sin()], 1)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, n_components, (n,), generator=g)
        x = centers[y] + sigma * torch.randn(n, 2, generator=g)
        return x.float(), y.long()

    xtr, ytr = sample(n_train)
    xte, yte = sample(n_test)
    return Data(
        "mog2d", xtr, ytr, xte, yte, n_components, DataKind.VECTOR, info={"centers": centers.tolist(), "sigma": sigma}
    )
