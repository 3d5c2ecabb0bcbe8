"""α-ReQ — Agrawal, Mondal, Ghosh & Richards, "α-ReQ: Assessing Representation Quality in
Self-Supervised Learning by Measuring Eigenspectrum Decay", NeurIPS 2022.

The eigenvalues λ_1 ≥ λ_2 ≥ … of the covariance of the (centred) train embeddings are fitted
with a power law λ_i ∝ i^(-α) by least squares on log λ_i = c - α log i. Metrics:

* ``alpha``: the fitted decay coefficient α (small: a flat, high-rank spectrum; large: few
  directions dominate; the paper finds α near 1 best for downstream accuracy);
* ``fit_r2``: the R² of the log-log fit (how well a power law describes the spectrum).

The fit uses the indices ``fit_start`` .. ``fit_stop`` (1-based, inclusive; ``fit_stop = 0`` =
the last index) among eigenvalues above the numerical tolerance λ_1 · 1e-12 (exactly-zero
directions of a low-rank matrix carry no power law). Computed on at most ``max_samples`` train
embeddings (seeded subset), in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from ssl_bench.embeddings import Embeddings
from ssl_bench.errors import ConfigError
from ssl_bench.evaluator import Evaluator, Metric
from ssl_bench.registry import register_evaluator
from ssl_bench.sampling import subsample


def covariance_eigenvalues(z: np.ndarray | torch.Tensor, max_samples: int = 20_000, seed: int = 0) -> np.ndarray:
    """Eigenvalues of the sample covariance (ddof 1), descending."""
    z = subsample(z if isinstance(z, np.ndarray) else np.asarray(z), max_samples, np.random.default_rng(seed))
    zt = torch.as_tensor(z, dtype=torch.float64)
    zc = zt - zt.mean(0, keepdim=True)
    cov = zc.T @ zc / max(len(zc) - 1, 1)
    return torch.linalg.eigvalsh(cov).flip(0).clamp_min(0).numpy()


def power_law_fit(eigenvalues: np.ndarray, fit_start: int = 1, fit_stop: int = 0) -> tuple[float, float]:
    """(α, R²) of log λ_i = c - α log i over the indices fit_start..fit_stop (1-based)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.size == 0 or lam[0] <= 0:
        return float("nan"), float("nan")
    lam = lam[lam > lam[0] * 1e-12]
    idx = np.arange(1, len(lam) + 1)
    stop = len(lam) if fit_stop <= 0 else min(fit_stop, len(lam))
    sel = (idx >= fit_start) & (idx <= stop)
    if sel.sum() < 2:
        return float("nan"), float("nan")
    x, y = np.log(idx[sel]), np.log(lam[sel])
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return float(-slope), r2


@register_evaluator("alpha-req")
class AlphaReQ(Evaluator):
    defaults = dict(max_samples=20_000, seed=0, fit_start=1, fit_stop=0)
    metrics = (
        Metric(
            "alpha",
            "α-ReQ",
            "",
            None,
            "α-ReQ: power-law decay of the covariance spectrum (no "
            "better direction: about 1 is reported as best for downstream accuracy)",
            headline=True,
        ),
        Metric("fit_r2", "α-ReQ fit R²", "", None, "R² of the power-law fit"),
    )
    order = 60
    needs_labels = False

    def evaluate(self, emb: Embeddings) -> dict[str, float]:
        o = self.options
        if o["fit_start"] < 1:
            raise ConfigError(f"alpha-req: fit_start is 1-based, got {o['fit_start']}")
        lam = covariance_eigenvalues(emb.train_x, o["max_samples"], o["seed"])
        alpha, r2 = power_law_fit(lam, o["fit_start"], o["fit_stop"])
        return {"alpha": alpha, "fit_r2": r2}
