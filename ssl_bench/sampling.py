"""Seeded subsampling: the one way ssl-bench picks ``n`` of ``total`` items.

:func:`subsample_indices` is used by the datasets' subsets, the evaluators that work on a sample
(alpha-ReQ, collapse, RankMe, the linear probe's preconditioner and penalty sweep, LiDAR,
reconstruction) and anything new. Its rules:

* ``n`` is ``None`` or at least ``total``: every index, in order, and the generator is not drawn
  from (a later draw from the same generator does not depend on whether this one subsampled);
* otherwise ``n`` distinct indices drawn without replacement, sorted unless ``sort=False`` (a
  sorted sample keeps the data's order, so its rows line up with the labels and with the file);
* the draw comes from the generator it is given: an ``int`` seed or a ``torch.Generator`` draws
  ``torch.randperm(total)[:n]``; a ``numpy.random.Generator`` draws ``rng.choice(total, n,
  replace=False)``. The NumPy stream is kept where an evaluator always drew from it (alpha-ReQ,
  collapse, the linear sweep), so their published numbers do not change.
"""

from __future__ import annotations

from typing import TypeVar, overload

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@overload
def subsample_indices(total: int, n: int | None, rng: int | torch.Generator, *, sort: bool = True) -> torch.Tensor: ...
@overload
def subsample_indices(total: int, n: int | None, rng: np.random.Generator, *, sort: bool = True) -> np.ndarray: ...
def subsample_indices(
    total: int, n: int | None, rng: int | torch.Generator | np.random.Generator, *, sort: bool = True
) -> torch.Tensor | np.ndarray:
    """Indices of a seeded sample of ``n`` of ``total`` items (see the module docstring)."""
    if isinstance(rng, np.random.Generator):
        if n is None or n >= total:
            return np.arange(total)
        idx = rng.choice(total, n, replace=False)
        return np.sort(idx) if sort else idx
    if n is None or n >= total:
        return torch.arange(total)
    g = rng if isinstance(rng, torch.Generator) else torch.Generator().manual_seed(rng)
    perm = torch.randperm(total, generator=g)[:n]
    return perm.sort().values if sort else perm


def is_subsampled(total: int, n: int | None) -> bool:
    """Does :func:`subsample_indices` drop anything?"""
    return n is not None and n < total


def subsample(
    x: ArrayT, n: int | None, rng: int | torch.Generator | np.random.Generator, *, sort: bool = True
) -> ArrayT:
    """The rows of ``x`` at :func:`subsample_indices` (``x`` itself, not a copy, when none is dropped)."""
    if not is_subsampled(len(x), n):
        return x
    idx = subsample_indices(len(x), n, rng, sort=sort)
    if isinstance(x, torch.Tensor):
        return x[torch.as_tensor(idx).to(x.device)]
    from .ondisk import take_rows  # an on-disk array is read chunk by chunk, never mapped whole

    return take_rows(x, np.asarray(idx))
