"""Collapse diagnostics and the Epps–Pulley / SIGReg statistic against independent computations."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from ssl_bench.embeddings import Embeddings
from ssl_bench.evaluators.collapse import collapse_report, dims_for_variance, mean_random_pair_cosine, verdict
from ssl_bench.registry import EVALUATORS
from ssl_bench.stats import COLLAPSED_EP_PER_SAMPLE, GAUSSIAN_EP, epps_pulley, random_directions, sigreg_statistic


def ep_closed_form(x: np.ndarray) -> float:
    """N ∫_R |φ_N(t) - e^{-t²/2}|² e^{-t²/2} dt in closed form (Gaussian integrals of cosines)."""
    n = len(x)
    d = x[:, None] - x[None, :]
    a = math.sqrt(2 * math.pi) * np.exp(-d ** 2 / 2).sum() / n ** 2
    b = 2 * math.sqrt(math.pi) * np.exp(-x ** 2 / 4).sum() / n
    return n * (a - b + math.sqrt(2 * math.pi / 3))


def ep_scipy(x: np.ndarray, t_max: float) -> float:
    """The same integral over [-t_max, t_max] by adaptive quadrature, from the definition."""
    def f(t):
        re = np.cos(t * x).mean() - math.exp(-t * t / 2)
        im = np.sin(t * x).mean()
        return (re * re + im * im) * math.exp(-t * t / 2)

    return len(x) * integrate.quad(f, -t_max, t_max, limit=200)[0]


def test_epps_pulley_matches_closed_form_and_quadrature():
    rng = np.random.default_rng(0)
    for x in (rng.standard_normal(300), rng.standard_normal(200) * 0.5 + 0.7, rng.exponential(size=100)):
        fine = float(epps_pulley(torch.tensor(x), t_max=10.0, knots=2001))
        assert fine == pytest.approx(ep_closed_form(x), rel=1e-6)
        default = float(epps_pulley(torch.tensor(x)))  # LeJEPA's grid: [0, 3], 17 knots
        assert default == pytest.approx(ep_scipy(x, 3.0), rel=2e-2)


def test_epps_pulley_reference_values():
    assert COLLAPSED_EP_PER_SAMPLE == pytest.approx(0.4089, abs=1e-4)
    assert GAUSSIAN_EP == pytest.approx(1.0594, abs=1e-4)
    zeros = torch.zeros(500, dtype=torch.float64)
    assert float(epps_pulley(zeros, t_max=10, knots=2001)) == pytest.approx(500 * COLLAPSED_EP_PER_SAMPLE, rel=1e-6)
    # E|φ_N - φ|² = (1 - e^{-t²}) / N exactly, so the mean over many N(0,1) samples -> GAUSSIAN_EP
    g = torch.Generator().manual_seed(1)
    x = torch.randn(100, 2000, generator=g, dtype=torch.float64)
    assert float(epps_pulley(x, t_max=8, knots=201).mean()) == pytest.approx(GAUSSIAN_EP, rel=0.05)


def test_sigreg_is_mean_ep_of_projections():
    z = np.random.default_rng(2).standard_normal((150, 6)) @ np.diag([3, 1, 1, 1, 0.2, 0.1])
    got = sigreg_statistic(z, num_directions=8, seed=3, standardize="none", dtype=torch.float64,
                           t_max=10.0, knots=2001)
    u = random_directions(6, 8, seed=3).numpy()
    want = np.mean([ep_closed_form(z @ u[:, k]) for k in range(8)])
    assert got == pytest.approx(want, rel=1e-6)


def test_sigreg_reference_points():
    rng = np.random.default_rng(4)
    gauss = rng.standard_normal((4000, 32)) * 7.0  # any scale: one global rescaling
    assert 0.8 < sigreg_statistic(gauss) < 1.3
    const = np.tile(rng.standard_normal(32), (4000, 1))
    assert sigreg_statistic(const) == pytest.approx(4000 * 0.40, rel=0.03)
    assert sigreg_statistic(rng.standard_normal((4000, 1)) @ rng.standard_normal((1, 32))) > 50


def test_collapse_metrics_match_numpy():
    rng = np.random.default_rng(5)
    z = rng.standard_normal((300, 12)) * rng.uniform(0.1, 3, 12) + rng.standard_normal(12)
    rep = collapse_report(z, sigreg_directions=16)
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    assert rep.metrics["norm_std"] == pytest.approx(np.mean([np.std(zn[:, j]) for j in range(12)]), rel=1e-9)
    assert rep.metrics["std_ratio"] == pytest.approx(rep.metrics["norm_std"] * math.sqrt(12), rel=1e-12)
    s = np.linalg.svd(z - z.mean(0), compute_uv=False)
    np.testing.assert_allclose(rep.spectrum, s, rtol=1e-8)
    frac = np.cumsum(s ** 2) / np.sum(s ** 2)
    assert rep.metrics["dims99"] == int(np.argmax(frac >= 0.99)) + 1
    assert rep.metrics["dims99_ratio"] == rep.metrics["dims99"] / 12


def test_dims_for_variance_known_spectra():
    assert dims_for_variance(torch.tensor([1.0, 1.0, 1.0, 0.0])) == 3
    assert dims_for_variance(torch.tensor([10.0, 1.0, 0.5])) == 2  # 100 / 101.25 < 0.99 < 101 / 101.25
    assert dims_for_variance(torch.zeros(5)) == 0


def test_mean_cosine_of_random_pairs():
    rng = np.random.default_rng(6)
    z = rng.standard_normal((40, 5)) + 1.0
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    c = zn @ zn.T
    exact = (c.sum() - np.trace(c)) / (40 * 39)  # all ordered pairs of distinct samples
    assert mean_random_pair_cosine(torch.tensor(z), 400_000, 0) == pytest.approx(exact, abs=4e-3)
    assert mean_random_pair_cosine(torch.ones(10, 3, dtype=torch.float64), 100, 0) == pytest.approx(1.0)


def test_verdicts_on_constructed_embeddings():
    rng = np.random.default_rng(7)
    ok = collapse_report(rng.standard_normal((5000, 64)))
    assert ok.verdict == "ok" and ok.metrics["std_ratio"] == pytest.approx(1.0, abs=0.02)
    assert ok.metrics["dims99"] >= 60 and abs(ok.metrics["mean_cos"]) < 0.02 and ok.metrics["sigreg"] < 1.3
    dim = collapse_report(rng.standard_normal((5000, 3)) @ rng.standard_normal((3, 64)))
    assert dim.verdict == "dimensional" and dim.metrics["dims99"] == 3 and dim.metrics["verdict_code"] == 1
    const = collapse_report(np.full((5000, 64), 0.3))
    assert const.verdict == "complete" and const.metrics["std_ratio"] == 0 and const.metrics["dims99"] == 0
    assert const.metrics["mean_cos"] == pytest.approx(1.0)
    # a point plus round-off noise is still complete collapse
    assert collapse_report(np.full((2000, 64), 0.3) + 1e-7 * rng.standard_normal((2000, 64))).verdict == "complete"
    assert verdict(2.0) == "complete" and verdict({"verdict_code": 0.0}) == "ok"


def test_evaluator_saves_the_spectrum(tmp_path):
    z = np.random.default_rng(8).standard_normal((400, 16)).astype(np.float32)
    ev = EVALUATORS.get("collapse")(sigreg_directions=8)
    assert ev.needs_labels is False
    metrics = ev(Embeddings(z, None, z[:10], None))
    assert set(metrics) == {"norm_std", "std_ratio", "dims99", "dims99_ratio", "mean_cos", "sigreg", "verdict_code"}
    assert ev.artifacts == {}  # no artifact dir: nothing written
    ev.artifact_dir, ev.artifact_prefix = tmp_path, "epoch_0003-"
    ev(Embeddings(z, None, z[:10], None))
    saved = np.load(tmp_path / "epoch_0003-collapse-spectrum.npy")
    np.testing.assert_allclose(saved, np.linalg.svd(z.astype(np.float64) - z.mean(0), compute_uv=False), rtol=1e-6)
    assert ev.artifacts["spectrum"] == tmp_path / "epoch_0003-collapse-spectrum.npy"
