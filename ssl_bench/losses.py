"""Loss functions: plain functions of tensors, no modules, no state.

Each one is tested against an independent computation of its formula in
``tests/test_losses.py``. Methods compose them; stop-gradients are the method's business
(pass ``z.detach()``), never hidden in here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


# ------------------------------------------------------------------------------- contrastive
def info_nce(z1: Tensor, z2: Tensor, temperature: float = 0.1) -> Tensor:
    """NT-Xent (SimCLR, Chen et al. 2020): symmetric InfoNCE over the 2N views of a batch.

    For each of the 2N embeddings the positive is its other view and the 2N-2 remaining
    embeddings are negatives; similarities are cosines divided by ``temperature``.

    Under data-parallel training (``torch.distributed`` initialised with W > 1 ranks, each
    holding its N rows of the global batch) the candidates are the 2NW views of the global
    batch, all-gathered with gradients (:func:`ssl_bench.distributed.gather`); each rank's loss
    is the mean over its own 2N anchors, so the mean over ranks equals the one-process loss on
    the global batch and DDP's gradient averaging gives its exact gradient.
    """
    from .distributed import gather, rank

    n = z1.shape[0]
    a1, a2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    cand = torch.cat([gather(a1), gather(a2)], 0)  # (2NW, d): the global batch's views
    big_n = cand.shape[0] // 2
    sim = torch.cat([a1, a2], 0) @ cand.t() / temperature  # (2N local anchors, 2NW)
    rows = torch.arange(n, device=sim.device) + rank() * n  # our rows in the global batch
    own = torch.cat([rows, rows + big_n])  # each anchor's own column
    pos = torch.cat([rows + big_n, rows])  # and its other view's
    self_mask = torch.zeros_like(sim, dtype=torch.bool)
    self_mask[torch.arange(2 * n, device=sim.device), own] = True
    sim = sim.masked_fill(self_mask, float("-inf"))
    return F.cross_entropy(sim, pos)


# ------------------------------------------------------------------------------ distillation
def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """Mean of -cos(p_i, z_i) (SimSiam); pass ``z.detach()`` for the stop-gradient."""
    return -F.cosine_similarity(p, z, dim=-1).mean()


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """BYOL's normalised MSE: mean of ||p/|p| - z/|z| ||^2 = 2 - 2 cos(p, z)."""
    return (2 - 2 * F.cosine_similarity(p, z, dim=-1)).mean()


# -------------------------------------------------------------------- information maximisation
def invariance_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Mean squared distance between paired embeddings (mean over batch and dimensions)."""
    return F.mse_loss(z1, z2)


def variance_loss(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """VICReg hinge on the per-dimension std: mean_j max(0, gamma - sqrt(Var(z_j) + eps))."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """VICReg: sum of squared off-diagonal covariances, divided by the dimension."""
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = (zc.t() @ zc) / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


def vicreg_terms(z1: Tensor, z2: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[Tensor, Tensor, Tensor]:
    """The three VICReg terms (invariance, variance, covariance) before weighting.

    As in the authors' code the variance term is averaged over the two branches and the
    covariance term summed.
    """
    inv = invariance_loss(z1, z2)
    var = (variance_loss(z1, gamma, eps) + variance_loss(z2, gamma, eps)) / 2
    cov = covariance_loss(z1) + covariance_loss(z2)
    return inv, var, cov


def vicreg(z1: Tensor, z2: Tensor, inv_weight: float = 25.0, var_weight: float = 25.0,
           cov_weight: float = 1.0, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """VICReg (Bardes et al. 2022): weighted invariance + variance + covariance terms."""
    inv, var, cov = vicreg_terms(z1, z2, gamma, eps)
    return inv_weight * inv + var_weight * var + cov_weight * cov


__all__ = [
    "info_nce", "negative_cosine", "byol_loss", "invariance_loss", "variance_loss",
    "covariance_loss", "vicreg_terms", "vicreg",
]
