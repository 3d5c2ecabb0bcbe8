"""RankMe — Garrido, Balestriero, Najman & LeCun, "RankMe: Assessing the Downstream Performance
of Pretrained Self-Supervised Representations by Their Rank", ICML 2023 (arXiv:2210.02885).

rank = exp(-sum_k p_k log p_k), p_k = sigma_k / sum(sigma), over the singular values of the
(uncentred) embedding matrix of at most 25,600 samples. Singular values below the numerical
rank tolerance (sigma_max * max(N, D) * machine eps) count as zero, so the result lies in
[1, min(N, D)] and a rank-r matrix with equal singular values gives exactly r.
Computed on the train split's embeddings; ``rank_ratio`` = rank / dimension.
"""

from __future__ import annotations

import numpy as np
import torch

from ssl_bench import ondisk
from ssl_bench.embeddings import Embeddings
from ssl_bench.evaluator import Evaluator, Metric
from ssl_bench.registry import register_evaluator
from ssl_bench.sampling import subsample


def singular_values(z: np.ndarray | torch.Tensor, max_samples: int = 25_600, seed: int = 0) -> torch.Tensor:
    if isinstance(z, np.ndarray) and ondisk.is_on_disk(z):  # only the sample's rows are read (the same rows)
        return torch.linalg.svdvals(torch.as_tensor(subsample(z, max_samples, seed, sort=False), dtype=torch.float64))
    z = subsample(torch.as_tensor(np.asarray(z), dtype=torch.float64), max_samples, seed, sort=False)
    return torch.linalg.svdvals(z)


def rankme(z: np.ndarray | torch.Tensor, max_samples: int = 25_600, seed: int = 0) -> float:
    s = singular_values(z, max_samples, seed)
    if s.numel() == 0 or float(s.max()) == 0.0:
        return 0.0
    n, d = min(len(z), max_samples), np.asarray(z).shape[1]
    tol = float(s.max()) * max(n, d) * torch.finfo(torch.float64).eps
    s = s[s > tol]
    p = s / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


@register_evaluator("rankme")
class RankMe(Evaluator):
    defaults = dict(max_samples=25_600, seed=0)
    metrics = (
        Metric(
            "rank",
            "RankMe",
            "",
            True,
            "RankMe: effective rank of the train embeddings (exp entropy of the normalised singular values)",
            headline=True,
        ),
        Metric("rank_ratio", "RankMe / d", "", True, "RankMe divided by the embedding dimension"),
    )
    order = 40
    needs_labels = False

    def evaluate(self, emb: Embeddings) -> dict[str, float]:
        o = self.options
        r = rankme(emb.train_x, o["max_samples"], o["seed"])
        return {"rank": r, "rank_ratio": r / emb.dim}
