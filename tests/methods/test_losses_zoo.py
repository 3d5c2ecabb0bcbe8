"""The method zoo's losses, each against an independent computation of its formula
(explicit loops / numpy / scipy on small float64 tensors) and at hand-derived points."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from ssl_bench import losses


def _rand(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


# ------------------------------------------------------------------------------- Barlow Twins
def test_barlow_twins_matches_loops():
    z1, z2 = _rand(8, 4, seed=1)
    a, b = z1.numpy(), z2.numpy()
    n, d = a.shape
    an = (a - a.mean(0)) / np.sqrt(a.var(0) + 1e-5)  # numpy var is the biased one
    bn = (b - b.mean(0)) / np.sqrt(b.var(0) + 1e-5)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(an[k, i] * bn[k, j] for k in range(n)) / n
            total += (1 - c) ** 2 if i == j else 0.005 * c ** 2
    assert losses.barlow_twins_loss(z1, z2, 0.005).item() == pytest.approx(total, rel=1e-10)


def test_barlow_twins_is_zero_for_identical_decorrelated_views():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    assert losses.barlow_twins_loss(z, z, 1.0, eps=0.0).item() == pytest.approx(0.0, abs=1e-12)
    # perfectly correlated dimensions: C = [[1, 1], [1, 1]] -> off-diagonal penalty 2 * lambd
    zc = torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    assert losses.barlow_twins_loss(zc, zc, 0.5, eps=0.0).item() == pytest.approx(1.0)


# ------------------------------------------------------------------------------------- SIGReg
def _np_epps_pulley(x, t_max=3.0, num_points=17):
    """EP = N * int_{-t_max}^{t_max} |ecf(t) - e^{-t^2/2}|^2 e^{-t^2/2} dt, trapezoid on the full
    symmetric interval with complex exponentials (the library uses the half interval x 2)."""
    t = np.linspace(-t_max, t_max, 2 * num_points - 1)
    ecf = np.exp(1j * np.outer(t, x)).mean(1)
    f = np.abs(ecf - np.exp(-t ** 2 / 2)) ** 2 * np.exp(-t ** 2 / 2)
    return len(x) * float(np.sum((f[1:] + f[:-1]) / 2 * np.diff(t)))


def test_sigreg_matches_numpy_epps_pulley_per_slice():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(40, 3, generator=g, dtype=torch.float64) * torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    a = torch.randn(3, 5, generator=g, dtype=torch.float64)
    a = a / a.norm(dim=0, keepdim=True)
    proj = (z @ a).numpy()
    want = np.mean([_np_epps_pulley(proj[:, s]) for s in range(5)])
    assert losses.sigreg(z, directions=a).item() == pytest.approx(want, rel=1e-9)
    # leading dimensions (views) are averaged
    zz = torch.stack([z, 2 * z])
    want2 = (want + np.mean([_np_epps_pulley(2 * proj[:, s]) for s in range(5)])) / 2
    assert losses.sigreg(zz, directions=a).item() == pytest.approx(want2, rel=1e-9)


def test_sigreg_is_about_one_for_isotropic_gaussian():
    # E[EP] = int_{-3}^{3} (1 - e^{-t^2}) e^{-t^2/2} dt for Gaussian samples, whatever N
    expected = integrate.quad(lambda t: (1 - math.exp(-t * t)) * math.exp(-t * t / 2), -3, 3)[0]
    assert expected == pytest.approx(1.053, abs=1e-3)
    g = torch.Generator().manual_seed(1)
    vals = [losses.sigreg(torch.randn(n, 16, generator=g, dtype=torch.float64), generator=g).item()
            for n in (128, 512) for _ in range(15)]
    assert np.mean(vals) == pytest.approx(expected, abs=0.12)
    # an anisotropic (non-standard) Gaussian is far from it
    wide = losses.sigreg(3 * torch.randn(512, 16, generator=g, dtype=torch.float64), generator=g).item()
    assert wide > 20


@pytest.mark.parametrize("n", [64, 256])
def test_sigreg_is_about_0_4_n_when_collapsed(n):
    per_sample = integrate.quad(lambda t: (1 - math.exp(-t * t / 2)) ** 2 * math.exp(-t * t / 2), -3, 3)[0]
    assert per_sample == pytest.approx(0.402, abs=1e-3)
    got = losses.sigreg(torch.zeros(n, 8, dtype=torch.float64)).item()
    assert got == pytest.approx(per_sample * n, rel=2e-3)  # 17 trapezoid knots vs exact quadrature


def test_sigreg_gradient_reaches_input_and_uses_generator():
    z = torch.randn(32, 4, dtype=torch.float64, requires_grad=True)
    a = losses.sigreg(z, generator=torch.Generator().manual_seed(3))
    b = losses.sigreg(z, generator=torch.Generator().manual_seed(3))
    assert a.item() == b.item()
    a.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(32, 4), (3, 20, 6)])
def test_sigreg_hand_written_gradient_equals_autograd_through_cos_and_sin(shape):
    """losses.sigreg's backward (reusing the forward's cosines and sines) against autograd through
    the formula written out, float64, with and without leading (view) dimensions; gradcheck too."""
    g = torch.Generator().manual_seed(5)
    z = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    a = torch.randn(shape[-1], 7, generator=g, dtype=torch.float64)
    a = a / a.norm(dim=0, keepdim=True)
    t = torch.linspace(0.0, 3.0, 17, dtype=torch.float64)
    phi = torch.exp(-0.5 * t * t)
    w = torch.full_like(t, 2 * 3.0 / 16)
    w[0] = w[-1] = 3.0 / 16
    xt = (z @ a).unsqueeze(-1) * t
    err = (xt.cos().mean(-3) - phi).pow(2) + xt.sin().mean(-3).pow(2)
    want = ((err @ (w * phi)) * shape[-2]).mean()
    (want_grad,) = torch.autograd.grad(2.5 * want, z)
    got = losses.sigreg(z, directions=a)
    (got_grad,) = torch.autograd.grad(2.5 * got, z)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    assert torch.allclose(got_grad, want_grad, rtol=1e-10, atol=1e-13)
    zz = z.detach()[..., :5, :].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: losses.sigreg(x, directions=a), (zz,))


def test_lejepa_invariance():
    z1, z2 = _rand(5, 3, seed=2)
    zs = torch.stack([z1, z2, z1 * 0])
    c = (z1.numpy() + z2.numpy()) / 3
    want = np.mean([((v - c) ** 2).mean() for v in (z1.numpy(), z2.numpy(), np.zeros_like(c))])
    assert losses.lejepa_invariance(zs).item() == pytest.approx(want, rel=1e-10)


# -------------------------------------------------------------------------------- contrastive
def test_cross_view_info_nce_matches_loops():
    q, k = _rand(5, 4, seed=3)
    t = 0.3
    qn = q.numpy() / np.linalg.norm(q.numpy(), axis=1, keepdims=True)
    kn = k.numpy() / np.linalg.norm(k.numpy(), axis=1, keepdims=True)
    want = np.mean([-np.log(_softmax(qn[i] @ kn.T / t)[i]) for i in range(5)])
    assert losses.cross_view_info_nce(q, k, t).item() == pytest.approx(want, rel=1e-10)


def test_info_nce_queue_matches_loops():
    q, k = _rand(4, 3, seed=4)
    queue = _rand(7, 3, seed=5)[0]
    t = 0.2
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    total = 0.0
    for i in range(4):
        logits = [unit(q[i].numpy()) @ unit(k[i].numpy()) / t]
        logits += [unit(q[i].numpy()) @ unit(m) / t for m in queue.numpy()]
        total += -np.log(_softmax(np.array(logits))[0])
    assert losses.info_nce_queue(q, k, queue, t).item() == pytest.approx(total / 4, rel=1e-10)


def test_margin_contrastive_matches_loops():
    z1, z2 = _rand(5, 3, seed=6)
    m = 2.5
    a, b = z1.numpy(), z2.numpy()
    pos = np.mean([np.sum((a[i] - b[i]) ** 2) for i in range(5)])
    neg = np.mean([max(0.0, m - np.linalg.norm(a[i] - b[j])) ** 2 for i in range(5) for j in range(5) if i != j])
    assert losses.margin_contrastive(z1, z2, m).item() == pytest.approx(pos + neg, rel=1e-9)
    # negatives beyond the margin cost nothing; identical positives cost nothing
    far = torch.tensor([[0.0, 0.0], [10.0, 0.0]], dtype=torch.float64)
    assert losses.margin_contrastive(far, far, 1.0).item() == 0.0
    # collapsed: every negative pays the full margin^2
    same = torch.ones(4, 2, dtype=torch.float64)
    assert losses.margin_contrastive(same, same, 1.5).item() == pytest.approx(1.5 ** 2)


# ------------------------------------------------------------------------------- distillation
def test_dino_loss_matches_loops():
    s, t = _rand(4, 6, seed=7)
    c = torch.linspace(-0.5, 0.5, 6, dtype=torch.float64)
    ts, tt = 0.1, 0.04
    total = 0.0
    for i in range(4):
        p = _softmax((t[i] - c).numpy() / tt)
        logq = np.log(_softmax(s[i].numpy() / ts))
        total += -np.sum(p * logq)
    assert losses.dino_loss(s, t, c, ts, tt).item() == pytest.approx(total / 4, rel=1e-9)


# --------------------------------------------------------------------------------- clustering
def test_sinkhorn_knopp_matches_explicit_iterations_and_equipartitions():
    g = torch.Generator().manual_seed(8)
    scores = torch.randn(6, 4, generator=g, dtype=torch.float64)
    eps, iters = 0.5, 3
    q = np.exp(scores.numpy() / eps).T  # (K, B)
    q = q / q.sum()
    for _ in range(iters):
        for r in range(4):
            q[r] = q[r] / q[r].sum() / 4
        for col in range(6):
            q[:, col] = q[:, col] / q[:, col].sum() / 6
    want = (q * 6).T
    got = losses.sinkhorn_knopp(scores, eps, iters)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    np.testing.assert_allclose(got.sum(1).numpy(), np.ones(6), rtol=1e-10)  # each sample: a distribution
    many = losses.sinkhorn_knopp(scores, eps, 200)
    np.testing.assert_allclose(many.sum(0).numpy(), np.full(4, 6 / 4), rtol=1e-6)  # prototypes equally used


def test_swav_loss_matches_loops():
    s1, s2 = _rand(3, 4, seed=9)
    q1 = torch.softmax(_rand(3, 4, seed=10)[0], 1)
    q2 = torch.softmax(_rand(3, 4, seed=11)[0], 1)
    t = 0.1
    l1 = np.mean([-np.sum(q2[i].numpy() * np.log(_softmax(s1[i].numpy() / t))) for i in range(3)])
    l2 = np.mean([-np.sum(q1[i].numpy() * np.log(_softmax(s2[i].numpy() / t))) for i in range(3)])
    assert losses.swav_loss(s1, s2, q1, q2, t).item() == pytest.approx((l1 + l2) / 2, rel=1e-9)


# --------------------------------------------------------------------------------- predictive
def test_squared_and_pairwise_distances():
    a, b = _rand(4, 3, seed=12)
    an, bn = a.numpy(), b.numpy()
    assert losses.squared_distance(a, b).item() == pytest.approx(np.mean([np.sum((an[i] - bn[i]) ** 2) for i in range(4)]))
    pw = np.mean([np.sum((an[i] - bn[j]) ** 2) for i in range(4) for j in range(4)])
    assert losses.pairwise_squared_distance(a, b).item() == pytest.approx(pw, rel=1e-10)
    # the decomposition the jepa-pairwise docstring relies on: spread of a + spread of b + mean gap
    dec = an.var(0).sum() + bn.var(0).sum() + np.sum((an.mean(0) - bn.mean(0)) ** 2)
    assert pw == pytest.approx(dec, rel=1e-10)


def test_masked_mse():
    pred = torch.arange(12, dtype=torch.float64).reshape(1, 3, 4)
    target = torch.zeros(1, 3, 4, dtype=torch.float64)
    mask = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    want = (np.mean(np.arange(4) ** 2) + np.mean(np.arange(8, 12) ** 2)) / 2
    assert losses.masked_mse(pred, target, mask).item() == pytest.approx(want)


# -------------------------------------------------------------------------------- score-based
def test_dsm_loss_matches_formula_and_is_zero_at_the_true_score():
    g = torch.Generator().manual_seed(13)
    score = torch.randn(4, 1, 2, 2, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0], dtype=torch.float64)
    noise = torch.randn(4, 1, 2, 2, generator=g, dtype=torch.float64) * sigma.view(-1, 1, 1, 1)
    want = np.mean([0.5 * s ** 2 * np.sum((score[i].numpy() + noise[i].numpy() / s ** 2) ** 2)
                    for i, s in enumerate(sigma.numpy())])
    assert losses.dsm_loss(score, noise, sigma).item() == pytest.approx(want, rel=1e-10)
    assert losses.dsm_loss(-noise / sigma.view(-1, 1, 1, 1) ** 2, noise, sigma).item() == pytest.approx(0.0, abs=1e-20)
    # a scalar sigma is broadcast
    assert losses.dsm_loss(score, noise, 0.5).item() == pytest.approx(
        losses.dsm_loss(score, noise, torch.full((4,), 0.5, dtype=torch.float64)).item())
