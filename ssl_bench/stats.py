"""Small statistics shared by evaluators: the Epps–Pulley normality statistic and SIGReg.

Epps & Pulley (1983), "A test of normality based on the empirical characteristic function",
Biometrika 70(3); SIGReg: Balestriero & LeCun, "LeJEPA: Provable and Scalable Self-Supervised
Learning Without the Heuristics", arXiv:2511.08544 (2025).

Also the uncertainty helpers of the leaderboard and `ssl-bench compare` (Student-t intervals,
Welch and paired t-tests; scipy), at the end of this module.

For samples x_1..x_N of one variable,

    EP(x) = N * ∫_{-∞}^{∞} |φ_N(t) - φ(t)|² w(t) dt,   φ_N(t) = (1/N) Σ_n exp(i t x_n),
    φ(t) = exp(-t²/2) (the N(0, 1) characteristic function),   w(t) = exp(-t²/2).

The integrand is even, so the integral is twice the one over [0, t_max], taken with the
trapezoid rule on ``knots`` points (LeJEPA's defaults: t_max = 3, 17 knots). Reference values
(exact integral over the whole line):

* x ~ N(0, 1):  E[EP] = ∫ (1 - e^{-t²}) e^{-t²/2} dt = √(2π) - √(2π/3) ≈ 1.06;
* x ≡ 0 (collapse): EP = N ∫ (1 - e^{-t²/2})² e^{-t²/2} dt = N (√(2π) - 2√π + √(2π/3)) ≈ 0.409 N.

SIGReg (sketched isotropic Gaussian regularisation) averages EP over the 1-D projections of
d-dimensional embeddings onto random unit directions: ≈ 1 when z ~ N(0, I), ≈ 0.4 N when all
embeddings coincide. Here it is a diagnostic, not a loss; ``ssl_bench.losses`` may hold the
differentiable training version.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Self

import numpy as np
import torch
from numpy.typing import ArrayLike

#: N * this = EP of a fully collapsed sample (exact integral over the whole line).
COLLAPSED_EP_PER_SAMPLE = math.sqrt(2 * math.pi) - 2 * math.sqrt(math.pi) + math.sqrt(2 * math.pi / 3)
#: E[EP] for an exact N(0, 1) sample (exact integral over the whole line).
GAUSSIAN_EP = math.sqrt(2 * math.pi) - math.sqrt(2 * math.pi / 3)


def _quadrature(
    t_max: float, knots: int, dtype: torch.dtype, device: torch.device | str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes on [0, t_max] and trapezoid weights for ∫_{-t_max}^{t_max} of an even function × w(t)."""
    if knots < 2 or t_max <= 0:
        raise ValueError("knots must be >= 2 and t_max > 0")
    t = torch.linspace(0.0, t_max, knots, dtype=dtype, device=device)
    dt = t_max / (knots - 1)
    w = torch.full((knots,), 2 * dt, dtype=dtype, device=device)
    w[0] = w[-1] = dt
    return t, w * torch.exp(-0.5 * t * t)


def epps_pulley(x: torch.Tensor, t_max: float = 3.0, knots: int = 17, chunk: int = 2048) -> torch.Tensor:
    """EP statistic of each column of ``x`` (N, K) -> (K,) in float64. A 1-D input gives a scalar.

    The cos/sin are evaluated in ``x``'s dtype (float32 is 2x faster; its rounding is far below
    the statistic's own sampling noise) and summed in float64.
    """
    squeeze = x.dim() == 1
    x = x.reshape(len(x), -1)
    n = x.shape[0]
    t, w = _quadrature(t_max, knots, torch.float64, x.device)
    tx = t.to(x.dtype)
    cos_sum = torch.zeros(x.shape[1], knots, dtype=torch.float64, device=x.device)
    sin_sum = torch.zeros_like(cos_sum)
    for i in range(0, n, chunk):  # (chunk, K, knots) at a time: bounded memory
        xt = x[i : i + chunk].unsqueeze(-1) * tx
        cos_sum += xt.cos().sum(0, dtype=torch.float64)
        sin_sum += xt.sin().sum(0, dtype=torch.float64)
    err = (cos_sum / n - torch.exp(-0.5 * t * t)) ** 2 + (sin_sum / n) ** 2
    out = n * (err @ w)
    return out[0] if squeeze else out


def random_directions(d: int, k: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(d, k) unit vectors, uniform on the sphere, from a seeded generator."""
    a = torch.randn(d, k, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return a / a.norm(dim=0, keepdim=True)


def global_scale(z: torch.Tensor, center: bool = False) -> torch.Tensor:
    """Divide by ONE scale s = RMS of the centred entries, so the mean per-dimension variance is 1.

    Per-dimension standardisation would hide dimensional collapse; one global scale keeps the
    shape of the covariance. ``center=True`` also subtracts the mean. A constant input (s at
    round-off level: below 1e-10 of the RMS of z) becomes all zeros, so its statistic is the
    collapsed value ≈ 0.4 N.
    """
    zc = z - z.mean(0, keepdim=True)
    s = zc.pow(2).mean().sqrt()
    if float(s) <= 1e-10 * float(z.pow(2).mean().sqrt()):
        return zc
    return (zc if center else z) / s


def sigreg_statistic(
    z: np.ndarray | torch.Tensor,
    num_directions: int = 128,
    t_max: float = 3.0,
    knots: int = 17,
    seed: int = 0,
    standardize: str = "scale",
    dtype: torch.dtype = torch.float32,
) -> float:
    """Mean EP statistic of the projections of ``z`` (N, d) on ``num_directions`` random directions.

    ``standardize``:

    * ``"scale"`` (default): one global rescaling, no centring (:func:`global_scale`): ≈ 1 for
      N(0, σ²I) whatever σ, ≈ 0.4 N for a constant output; a mean offset counts as a departure
      (the target is centred, as in LeJEPA);
    * ``"center"``: centre, then rescale. Removing the sample mean removes its fluctuation too,
      so an exact Gaussian sample scores ≈ 0.58 (= 1.06 - ∫ t² e^{-3t²/2} dt), not 1;
    * ``"none"``: the raw embeddings, as LeJEPA's loss sees them.
    """
    z = torch.as_tensor(np.asarray(z), dtype=torch.float64)
    if standardize in ("scale", "center"):
        z = global_scale(z, center=standardize == "center")
    elif standardize != "none":
        raise ValueError(f"unknown standardize {standardize!r}; known: scale, center, none")
    proj = (z @ random_directions(z.shape[1], num_directions, seed, z.dtype)).to(dtype)
    return float(epps_pulley(proj, t_max, knots).mean())


class small_work_threads:
    """Context manager: run with ONE torch thread when ``work`` (a rough count of multiply-adds
    per step) is below ``threshold``. Small problems (L-BFGS on a few thousand samples, a tiny
    decoder) spend their time in thread synchronisation, and on a shared, oversubscribed CPU
    that costs 10x (measured: digits linear probe 1.3 s with 1 thread, 13.5 s with 2)."""

    def __init__(self, work: float, threshold: float = 2e7) -> None:
        self.single = work < threshold
        self.saved: int | None = None

    def __enter__(self) -> Self:
        if self.single:
            self.saved = torch.get_num_threads()
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        if self.saved is not None:
            torch.set_num_threads(self.saved)
        return False


# -- uncertainty of aggregated results (leaderboard, compare) ---------------------------------------
#: Confidence level of every interval the leaderboard and ``ssl-bench compare`` print.
CONFIDENCE = 0.95
#: Significance level of the tie test (Welch) and of ``compare``'s verdict.
ALPHA = 0.05


def t_half_width(std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the Student-t confidence interval of a mean of ``n`` values with sample std
    ``std`` (ddof = 1): t_{(1+c)/2, n-1} · std / √n. NaN when n < 2 (no interval from one value)."""
    from scipy import stats as st

    if n is None or n < 2 or std is None or not math.isfinite(std):
        return float("nan")
    return float(st.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))


def prediction_half_width(std: float, n: int, m: int = 1, confidence: float = CONFIDENCE) -> float:
    """Half-width of the Student-t prediction interval for the mean of ``m`` new draws around the
    mean of ``n`` earlier ones with sample std ``std``: t_{(1+c)/2, n-1} · std · √(1/m + 1/n)
    (``m = 1``: one new run, t·s·√(1 + 1/n)). NaN when n < 2."""
    from scipy import stats as st

    if n is None or n < 2 or std is None or not math.isfinite(std) or m < 1:
        return float("nan")
    return float(st.t.ppf(0.5 + confidence / 2, n - 1) * std * math.sqrt(1 / m + 1 / n))


def welch_p(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) from summary statistics. NaN when a
    side has n < 2. Both stds zero: 1.0 if the means are equal, else 0.0 (no noise, any gap is real)."""
    from scipy import stats as st

    if n1 < 2 or n2 < 2:
        return float("nan")
    if s1 == 0 and s2 == 0:
        return 1.0 if m1 == m2 else 0.0
    return float(st.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue)


def paired_difference(a: ArrayLike, b: ArrayLike, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Paired comparison of two equal-length samples (same seeds): mean difference a - b, its
    Student-t confidence interval and the paired t-test p-value (two-sided). With one pair only
    the difference is defined (ci and p are None); with zero spread the interval has width 0
    and p is 0 (a nonzero difference) or 1 (none)."""
    from scipy import stats as st

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(d)
    out = {
        "n": n,
        "diff": float(d.mean()) if n else float("nan"),
        "ci_low": None,
        "ci_high": None,
        "ci_half_width": None,
        "p_value": None,
    }
    if n < 2:
        return out
    diff = float(d.mean())
    sd = float(d.std(ddof=1))
    hw = t_half_width(sd, n, confidence)
    out.update(ci_low=diff - hw, ci_high=diff + hw, ci_half_width=hw)
    if sd == 0:
        out["p_value"] = 0.0 if diff != 0 else 1.0
    else:
        out["p_value"] = float(st.ttest_1samp(d, 0.0).pvalue)
    return out
