"""LiDAR — Thilak, Huang, Saremi, Dinh, Goh, Susskind, Littwin & Zhai, "LiDAR: Sensing Linear
Probing Performance in Joint Embedding SSL Architectures", ICLR 2024 (arXiv:2312.04000).

A model evaluator (it needs augmented views, not cached embeddings). ``n_samples`` training
images (seeded) are each augmented ``n_views`` times with the data kind's default view recipe
(:func:`ssl_bench.views.default_augment`, the same for every method, seeded) and encoded with
``method.encode``; the views of one image form one surrogate class. With e_ij the embedding of
view j of sample i, μ_i the class means and μ their mean:

    Σ_b = 1/(n-1) Σ_i (μ_i - μ)(μ_i - μ)ᵀ
    Σ_w = 1/(n(q-1)) Σ_ij (e_ij - μ_i)(e_ij - μ_i)ᵀ + δ I
    Σ_LiDAR = Σ_w^{-1/2} Σ_b Σ_w^{-1/2}          (the LDA matrix)
    p_k = λ_k / Σ_k λ_k + ε,   LiDAR = exp(-Σ_k p_k log p_k)

over the eigenvalues λ_k of Σ_LiDAR (δ = 1e-4, ε = 1e-8 as in the paper). Metrics ``lidar``
(in [1, d]) and ``lidar_ratio`` = lidar / d. Not defined for the ``pixels`` baseline (no model):
the harness skips it there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TYPE_CHECKING

import numpy as np
import torch

from ssl_bench.errors import ConfigError
from ssl_bench.evaluator import Evaluator, Metric
from ssl_bench.registry import register_evaluator
from ssl_bench.sampling import subsample_indices
from ssl_bench.views import default_augment

if TYPE_CHECKING:
    from ssl_bench.data import Data
    from ssl_bench.method import Method


def lidar_score(e: np.ndarray | torch.Tensor, delta: float = 1e-4, eps: float = 1e-8) -> float:
    """LiDAR of embeddings grouped as (n surrogate classes, q views, d)."""
    e = torch.as_tensor(np.asarray(e), dtype=torch.float64)
    if e.dim() != 3 or e.shape[0] < 2 or e.shape[1] < 2:
        raise ValueError(f"LiDAR needs (n >= 2 samples, q >= 2 views, d) embeddings, got shape {tuple(e.shape)}")
    n, q, d = e.shape
    mu_i = e.mean(1)
    mb = mu_i - mu_i.mean(0)
    sb = mb.T @ mb / (n - 1)
    w = (e - mu_i[:, None]).reshape(n * q, d)
    sw = w.T @ w / (n * (q - 1)) + delta * torch.eye(d, dtype=e.dtype)
    ev, u = torch.linalg.eigh(sw)
    inv_sqrt = u @ torch.diag(ev.clamp_min(1e-30).rsqrt()) @ u.T
    lam = torch.linalg.eigvalsh(inv_sqrt @ sb @ inv_sqrt).clamp_min(0)
    if float(lam.sum()) <= 0:
        return 1.0
    p = lam / lam.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def surrogate_embeddings(
    method: Method,
    data: Data,
    device: torch.device,
    n_samples: int,
    n_views: int,
    seed: int,
    batch_size: int = 512,
    autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> np.ndarray:
    """(n, q, d) embeddings of q default-recipe views of n seeded training samples; ``autocast()``
    gives the context of each forward."""
    n = min(n_samples, len(data.x_train))
    idx = subsample_indices(len(data.x_train), n, seed)
    x = data.to_float(data.x_train[idx]).to(device)
    aug = default_augment(data.kind)
    g = torch.Generator(device=device).manual_seed(seed + 1)
    views = []
    for _ in range(n_views):
        zs = []
        for i in range(0, n, batch_size):
            xb = data.normalize(aug(x[i : i + batch_size], g))
            with autocast():
                zs.append(method.encode(xb).float().flatten(1).cpu())
        views.append(torch.cat(zs))
    return torch.stack(views, 1).numpy()


@register_evaluator("lidar")
class LiDAR(Evaluator):
    defaults = dict(n_samples=500, n_views=8, delta=1e-4, eps=1e-8, seed=0)
    metrics = (
        Metric(
            "lidar",
            "LiDAR",
            "",
            True,
            "LiDAR: effective rank of the LDA matrix of augmented views (model evaluator: no value for pixels)",
            headline=True,
        ),
        Metric("lidar_ratio", "LiDAR / d", "", True, "LiDAR divided by the embedding dimension"),
    )
    order = 50
    legend_options = ("n_samples", "n_views")
    preset_options = {"smoke": dict(n_samples=128, n_views=4), "full": dict(n_samples=2000, n_views=16)}
    needs_labels = False
    needs_model = True

    def evaluate_model(self, method: Method, data: Data, device: torch.device) -> dict[str, float]:
        o = self.options
        if o["n_views"] < 2 or o["n_samples"] < 2:
            raise ConfigError("lidar: n_samples and n_views must be >= 2")
        e = surrogate_embeddings(
            method, data, device, o["n_samples"], o["n_views"], o["seed"], autocast=lambda: self.autocast(device)
        )
        score = lidar_score(e, o["delta"], o["eps"])
        return {"lidar": score, "lidar_ratio": score / e.shape[2]}
