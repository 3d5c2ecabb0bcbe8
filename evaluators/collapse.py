"""Collapse diagnostics: is the representation spread out, squeezed into few dimensions
(dimensional collapse, Jing et al. ICLR 2022, arXiv:2110.09348) or one point (complete collapse)?

Computed on at most ``max_samples`` train embeddings (seeded subset); no labels needed.

Metrics (all floats):

* ``norm_std``: std over samples of the l2-normalised embedding, averaged over dimensions
  (the SimSiam diagnostic, Chen & He 2021); ``std_ratio`` = norm_std · √d. For z ~ N(0, I)
  each coordinate of z/‖z‖ has std ≈ 1/√d, so std_ratio ≈ 1; a collapsed output gives 0.
* ``dims99``: the number of principal directions holding 99 % of the variance of the centred
  embeddings (0 when there is no variance at all: singular values under 1e-10 · max|z| · √N,
  the round-off of the centring, count as zero); ``dims99_ratio`` = dims99 / d.
* ``mean_cos``: mean cosine similarity of ``n_pairs`` random pairs of distinct samples
  (≈ 0 for a centred isotropic cloud, 1 for a constant output).
* ``sigreg``: the SIGReg statistic (mean Epps–Pulley statistic over random 1-D projections,
  :mod:`ssl_bench.stats`) of the embeddings after ONE global rescaling (no centring): ≈ 1 for
  an isotropic centred Gaussian of any scale, ≈ 0.4 · N for a constant output (N =
  ``sigreg_samples``), large for any output far from an isotropic Gaussian.
  Non-Gaussian but healthy features (e.g. after a ReLU) also score high: it is reported, not
  used by the verdict.
* ``verdict_code``: 0 = ``ok``, 1 = ``dimensional``, 2 = ``complete``; :func:`verdict` turns a
  metrics dict (or the code) back into the name.

Verdict thresholds (options ``complete_std_ratio`` and ``dimensional_ratio``):

* ``complete`` if std_ratio < 0.05 — the normalised embeddings vary at under 5 % of what an
  isotropic cloud would, i.e. every input maps to (nearly) the same direction;
* else ``dimensional`` if dims99 < 0.1 · min(d, N - 1) — 99 % of the variance lives in under a
  tenth of the available dimensions;
* else ``ok``.

The singular-value spectrum (singular values of the centred embedding matrix, descending;
σ_k² / (N - 1) are the covariance eigenvalues) is an array, not a metric: when the harness
gives the evaluator an artifact directory (``ssl-bench run`` / ``eval``: ``<run>/artifacts/``;
``eval-embeddings --artifacts DIR``) it is saved as ``<prefix>collapse-spectrum.npy`` there and
its path is kept in ``evaluator.artifacts["spectrum"]``. :func:`collapse_report` returns it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssl_bench.embeddings import Embeddings
from ssl_bench.evaluator import Evaluator, Metric
from ssl_bench.registry import register_evaluator
from ssl_bench.sampling import subsample
from ssl_bench.stats import sigreg_statistic

#: Collapse verdicts, in the order of ``verdict_code`` (0, 1, 2); the collapse suite's ``expect``
#: (:mod:`ssl_bench.collapse`) takes the same words.
VERDICTS = ("ok", "dimensional", "complete")


@dataclass
class CollapseReport:
    metrics: dict[str, float]
    spectrum: np.ndarray  # singular values of the centred embeddings, descending

    @property
    def verdict(self) -> str:
        return verdict(self.metrics)


def verdict(metrics_or_code: dict[str, float] | float) -> str:
    """``"ok"`` / ``"dimensional"`` / ``"complete"`` from a metrics dict or a verdict code."""
    code = metrics_or_code["verdict_code"] if isinstance(metrics_or_code, dict) else metrics_or_code
    return VERDICTS[int(round(float(code)))]


def normalized_std(z: torch.Tensor) -> float:
    """Std over samples (ddof 0) of z/‖z‖, averaged over dimensions."""
    zn = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float(zn.std(0, correction=0).mean())


def centred_singular_values(z: torch.Tensor) -> torch.Tensor:
    """Singular values of the centred matrix, descending, via the d x d Gram matrix (float64)."""
    zc = z - z.mean(0, keepdim=True)
    ev = torch.linalg.eigvalsh(zc.T @ zc).flip(0).clamp_min(0)
    return ev.sqrt()


def dims_for_variance(s: torch.Tensor, frac: float = 0.99) -> int:
    """Smallest k with the top-k squared singular values holding ``frac`` of their sum (0 if none)."""
    var = s.double() ** 2
    total = float(var.sum())
    if total <= 0:
        return 0
    # relative tolerance: values at round-off level of the largest one are no variance
    var = torch.where(var > var.max() * 1e-12, var, torch.zeros_like(var))
    cum = torch.cumsum(var, 0) / var.sum()
    return int(torch.searchsorted(cum, torch.tensor([frac - 1e-12], dtype=cum.dtype)).item()) + 1


def mean_random_pair_cosine(z: torch.Tensor, n_pairs: int, seed: int) -> float:
    n = len(z)
    if n < 2:
        return float("nan")
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (n_pairs,), generator=g)
    j = (i + torch.randint(1, n, (n_pairs,), generator=g)) % n  # j != i
    zn = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float((zn[i] * zn[j]).sum(1).mean())


def collapse_report(
    z: np.ndarray | torch.Tensor,
    max_samples: int = 10_000,
    n_pairs: int = 10_000,
    sigreg_samples: int = 10_000,
    sigreg_directions: int = 128,
    seed: int = 0,
    complete_std_ratio: float = 0.05,
    dimensional_ratio: float = 0.1,
) -> CollapseReport:
    z = np.asarray(z)
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"collapse diagnostics need a (N >= 2, d) matrix, got shape {z.shape}")
    z = torch.as_tensor(subsample(z, max_samples, np.random.default_rng(seed)), dtype=torch.float64)
    n, d = z.shape
    nstd = normalized_std(z)
    ratio = nstd * np.sqrt(d)
    s = centred_singular_values(z)
    s[s <= 1e-10 * float(z.abs().max()) * np.sqrt(n)] = 0  # round-off of the centring is no variance
    k99 = dims_for_variance(s, 0.99)
    cos = mean_random_pair_cosine(z, n_pairs, seed)
    sig = sigreg_statistic(
        subsample(z.numpy(), sigreg_samples, np.random.default_rng(seed + 1)), sigreg_directions, seed=seed
    )
    if ratio < complete_std_ratio:
        code = 2
    elif k99 < dimensional_ratio * min(d, n - 1):
        code = 1
    else:
        code = 0
    metrics = dict(
        norm_std=nstd,
        std_ratio=float(ratio),
        dims99=float(k99),
        dims99_ratio=k99 / d,
        mean_cos=cos,
        sigreg=sig,
        verdict_code=float(code),
    )
    return CollapseReport(metrics, s.numpy())


@register_evaluator("collapse")
class Collapse(Evaluator):
    defaults = dict(
        max_samples=10_000,
        n_pairs=10_000,
        sigreg_samples=10_000,
        sigreg_directions=128,
        seed=0,
        complete_std_ratio=0.05,
        dimensional_ratio=0.1,
    )
    metrics = (
        Metric(
            "std_ratio",
            "std·√d",
            "",
            True,
            "std·√d: std of the L2-normalised embeddings times √d (1 = isotropic, 0 = collapsed)",
            headline=True,
        ),
        Metric(
            "verdict_code",
            "collapse",
            "",
            None,
            "collapse verdict (ok / dimensional / complete; over seeds: the word of the rounded mean code)",
            headline=True,
            categorical={0: "ok", 1: "dimensional", 2: "complete"},
        ),
        Metric("norm_std", "normalised std", "", True, "std of the L2-normalised embeddings"),
        Metric("dims99", "dims 99%", "", True, "dimensions holding 99% of the variance"),
        Metric("dims99_ratio", "dims 99% / d", "", True, "dims99 divided by the embedding dimension"),
        Metric("mean_cos", "mean cosine", "", False, "mean cosine similarity of random pairs"),
        Metric("sigreg", "SIGReg", "", False, "SIGReg statistic (about 1 for an isotropic Gaussian)"),
    )
    order = 70
    preset_options = {"full": dict(max_samples=20_000)}
    needs_labels = False

    def evaluate(self, emb: Embeddings) -> dict[str, float]:
        rep = collapse_report(emb.train_x, **self.options)
        path = self.artifact_path("collapse-spectrum.npy")
        if path is not None:
            np.save(path, rep.spectrum)
            self.artifacts["spectrum"] = path
        return rep.metrics
