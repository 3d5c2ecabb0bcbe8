"""Each loss against an independent computation of its formula (explicit loops / numpy)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_bench import losses


def _rand(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def test_info_nce_matches_explicit_nt_xent():
    z1, z2 = _rand()
    t = 0.5
    z = torch.cat([z1, z2]).numpy()
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2  # the other view of sample i
        num = math.exp(z[i] @ z[j] / t)
        den = sum(math.exp(z[i] @ z[k] / t) for k in range(n2) if k != i)
        total += -math.log(num / den)
    assert losses.info_nce(z1, z2, t).item() == pytest.approx(total / n2, rel=1e-10)


def test_info_nce_limits():
    e = torch.eye(8, dtype=torch.float64)  # views agree, negatives orthogonal
    assert losses.info_nce(e, e, 0.05).item() == pytest.approx(math.log(1 + 14 * math.exp(-20)), rel=1e-6)
    c = torch.ones(8, 4, dtype=torch.float64)  # collapsed: positives are as similar as negatives
    assert losses.info_nce(c, c, 0.1).item() == pytest.approx(math.log(15), rel=1e-9)


def test_byol_and_negative_cosine():
    p, z = _rand()
    cos = [float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(p.numpy(), z.numpy())]
    assert losses.negative_cosine(p, z).item() == pytest.approx(-np.mean(cos), rel=1e-10)
    pn = p.numpy() / np.linalg.norm(p.numpy(), axis=1, keepdims=True)
    zn = z.numpy() / np.linalg.norm(z.numpy(), axis=1, keepdims=True)
    assert losses.byol_loss(p, z).item() == pytest.approx(np.mean(np.sum((pn - zn) ** 2, 1)), rel=1e-10)


def _np_vicreg(a, b, wi, wv, wc, gamma=1.0, eps=1e-4):
    n, d = a.shape
    inv = np.mean((a - b) ** 2)

    def var(x):
        std = np.sqrt(x.var(axis=0, ddof=1) + eps)
        return np.mean(np.maximum(0, gamma - std))

    def cov(x):
        c = np.cov(x, rowvar=False)  # unbiased, like the paper
        return (np.sum(c ** 2) - np.sum(np.diag(c) ** 2)) / d

    return wi * inv + wv * (var(a) + var(b)) / 2 + wc * (cov(a) + cov(b))


@pytest.mark.parametrize("w", [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)])
def test_vicreg_matches_numpy(w):
    z1, z2 = _rand(16, 8, seed=3)
    z1 = z1 * 0.3  # some dimensions below the std target so the hinge is active
    got = losses.vicreg(z1, z2, *w).item()
    assert got == pytest.approx(_np_vicreg(z1.numpy(), z2.numpy(), *w), rel=1e-9)


def test_vicreg_terms_at_known_points():
    z = torch.eye(4, dtype=torch.float64).repeat(2, 1) * 3.0  # std well above 1 in every dim
    inv, var, cov = losses.vicreg_terms(z, z)
    assert inv.item() == 0.0 and var.item() == 0.0
    const = torch.ones(8, 4, dtype=torch.float64)
    _, var_c, cov_c = losses.vicreg_terms(const, const)
    assert var_c.item() == pytest.approx(1 - math.sqrt(1e-4))  # collapsed: the hinge is fully active
    assert cov_c.item() == 0.0


def test_token_regression_mse_and_smooth_l1_by_hand():
    pred = torch.zeros(1, 2, 2, dtype=torch.float64)
    target = torch.tensor([[[0.5, 2.0], [-3.0, 0.2]]], dtype=torch.float64)
    # d = -0.5, -2, 3, -0.2: squares 0.25, 4, 9, 0.04; smooth-L1 0.125, 1.5, 2.5, 0.02
    assert losses.token_regression(pred, target).item() == pytest.approx(13.29 / 4, rel=1e-12)
    assert losses.token_regression(pred, target, "mse").item() == pytest.approx(13.29 / 4, rel=1e-12)
    assert losses.token_regression(pred, target, "smooth_l1").item() == pytest.approx(4.145 / 4, rel=1e-12)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, 5, generator=g), 2 * torch.randn(3, 4, 5, generator=g)
    assert torch.equal(losses.token_regression(a, b, "smooth_l1"), F.smooth_l1_loss(a, b))
    d = (a - b).abs()
    assert losses.token_regression(a, b, "smooth_l1").item() == pytest.approx(
        torch.where(d < 1, 0.5 * d**2, d - 0.5).mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="smooth_l1"):
        losses.token_regression(a, b, "l1")
