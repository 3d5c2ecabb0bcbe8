"""Loss functions: plain functions of tensors, no modules, no state.

Each one is tested against an independent computation of its formula in
``tests/methods/test_losses.py``. Methods compose them; stop-gradients are the method's business
(pass ``z.detach()``), never hidden in here.
"""

from __future__ import annotations

from typing import Any

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


def vicreg(
    z1: Tensor,
    z2: Tensor,
    inv_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> Tensor:
    """VICReg (Bardes et al. 2022): weighted invariance + variance + covariance terms."""
    inv, var, cov = vicreg_terms(z1, z2, gamma, eps)
    return inv_weight * inv + var_weight * var + cov_weight * cov


# ---------------------------------------------------------------- information maximisation (2)
def barlow_twins_loss(z1: Tensor, z2: Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> Tensor:
    """Barlow Twins (Zbontar et al. 2021): sum_i (1 - C_ii)^2 + lambd * sum_{i!=j} C_ij^2.

    ``C = z1n^T z2n / N`` is the cross-correlation of the two branches after standardising each
    dimension over the batch with the biased variance (the authors' ``BatchNorm1d(affine=False)``).
    """
    n = z1.shape[0]
    z1n = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + eps)
    z2n = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + eps)
    c = z1n.t() @ z2n / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + lambd * off


def sigreg(
    z: Tensor,
    num_slices: int = 256,
    t_max: float = 3.0,
    num_points: int = 17,
    directions: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SIGReg (LeJEPA, Balestriero & LeCun 2025, arXiv:2511.08544): sliced Epps-Pulley test
    of ``z`` (shape ``(..., N, D)``) against the isotropic Gaussian N(0, I).

    ``z`` is projected on ``num_slices`` random unit directions ``a`` (or the given
    ``directions``, shape ``(D, num_slices)``, columns of unit norm); for each 1-D projection
    ``x = z a`` the Epps-Pulley statistic is

        EP = N * integral_{-t_max}^{t_max} |phi_N(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt

    with ``phi_N(t) = mean_n exp(i t x_n)`` the empirical characteristic function. As in the
    reference code the integrand is even, so the integral is 2x a trapezoid rule on
    ``[0, t_max]`` with ``num_points`` knots (17 on [0, 3] by default). The result is the mean
    of EP over slices (and over leading dimensions, e.g. views).

    Normalisation (the paper's N-scaled statistic, no further division): for N samples of an
    isotropic Gaussian E[EP] = integral (1 - e^{-t^2}) e^{-t^2/2} dt ~ 1.06 whatever N; for a
    batch fully collapsed at the origin EP = N * integral (1 - e^{-t^2/2})^2 e^{-t^2/2} dt
    ~ 0.40 N. Directions are drawn from ``generator`` (default: torch's global RNG, on the CPU
    so runs are reproducible on every device).
    """
    d = z.shape[-1]
    if directions is None:
        a = torch.randn(d, num_slices, generator=generator, dtype=torch.float32)
        directions = a / a.norm(dim=0, keepdim=True)
    a = directions.to(device=z.device, dtype=z.dtype)
    t = torch.linspace(0.0, t_max, num_points, device=z.device, dtype=z.dtype)
    phi = torch.exp(-0.5 * t * t)
    dt = t_max / (num_points - 1)
    w = torch.full_like(t, 2 * dt)
    w[0] = w[-1] = dt  # trapezoid on [0, t_max], doubled for [-t_max, 0]
    return _EppsPulleySlices.apply(z @ a, t, phi, w * phi)


class _EppsPulleySlices(torch.autograd.Function):
    """mean over slices (and leading dims) of ``N * sum_t q_t |phi_N(t) - phi(t)|^2`` for the
    projections ``x`` (shape ``(..., N, S)``). The same value as autograd through ``cos``/``sin``,
    with a hand-written backward that reuses the forward's cosines and sines instead of
    recomputing them: for ``C_t, S_t`` the means over N of ``cos(x t), sin(x t)`` and K the number
    of averaged slices, dL/dx_n = (2/K) sum_t q_t t (S_t cos(x_n t) - (C_t - phi_t) sin(x_n t)).
    (About half the time of the autograd version for LeJEPA's 8 x 128 x 256 x 17 on a CPU.)"""

    @staticmethod
    def forward(ctx: Any, x: Tensor, t: Tensor, phi: Tensor, q: Tensor) -> Tensor:  # type: ignore[override]
        xt = x.unsqueeze(-1) * t  # (..., N, S, T)
        cos, sin = xt.cos(), xt.sin()
        c, s = cos.mean(-3), sin.mean(-3)  # (..., S, T)
        err = (c - phi).pow(2) + s.pow(2)
        per_slice = (err @ q) * x.shape[-2]  # (..., S)
        ctx.save_for_backward(cos, sin, c, s, t, phi, q)
        ctx.k = per_slice.numel()
        return per_slice.mean()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        cos, sin, c, s, t, phi, q = ctx.saved_tensors
        scale = grad * 2.0 / ctx.k * q * t  # (T,)
        a_t = (s * scale).unsqueeze(-3)  # (..., 1, S, T)
        b_t = (-(c - phi) * scale).unsqueeze(-3)
        gx = (cos * a_t).sum(-1) + (sin * b_t).sum(-1)  # (..., N, S)
        return gx, None, None, None


def lejepa_invariance(zs: Tensor) -> Tensor:
    """LeJEPA's prediction term: mean squared distance of each view's embedding to the mean
    embedding over views. ``zs``: ``(V, N, D)``."""
    return (zs - zs.mean(0, keepdim=True)).pow(2).mean()


# --------------------------------------------------------------------------- contrastive (2)
def cross_view_info_nce(q: Tensor, k: Tensor, temperature: float = 0.2) -> Tensor:
    """One-directional InfoNCE between two view batches (MoCo v3, CPC): the positive of
    ``q_i`` is ``k_i``, the negatives are the other ``k_j``; similarities are cosines / T.

    Under data-parallel training the negatives are the global batch's keys (all-gathered with
    gradients) and the loss is the mean over this rank's queries, as in :func:`info_nce`."""
    from .distributed import gather, rank

    logits = F.normalize(q, dim=1) @ gather(F.normalize(k, dim=1)).t() / temperature
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device) + rank() * q.shape[0])


def info_nce_queue(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    """MoCo (He et al. 2020): positive ``cos(q_i, k_i)``, negatives ``cos(q_i, queue_m)``;
    cross-entropy with the positive at index 0. ``queue``: ``(M, D)``."""
    q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    pos = (q * k).sum(1, keepdim=True)
    logits = torch.cat([pos, q @ queue.t()], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def margin_contrastive(z1: Tensor, z2: Tensor, margin: float = 1.0) -> Tensor:
    """Pairwise hinge (Hadsell, Chopra & LeCun 2006): F(x, y)^2 + [m - F(x, y^)]_+^2.

    ``F`` is the Euclidean distance of embeddings; ``(z1_i, z2_i)`` are positive pairs and every
    ``(z1_i, z2_j)``, ``j != i``, is a negative. Returns mean positive term + mean negative term.

    Under data-parallel training the ``z2_j`` are the global batch's (all-gathered with
    gradients) and the means run over this rank's rows, as in :func:`info_nce`.
    """
    from .distributed import gather, rank

    dist = torch.cdist(z1, gather(z2))  # (n local, N global)
    n = dist.shape[0]
    rows = torch.arange(n, device=dist.device)
    eye = torch.zeros_like(dist, dtype=torch.bool)
    eye[rows, rows + rank() * n] = True
    pos = dist[eye].pow(2).mean()
    neg = F.relu(margin - dist[~eye]).pow(2).mean()
    return pos + neg


# ---------------------------------------------------------------------------- distillation (2)
def dino_loss(
    student: Tensor, teacher: Tensor, center: Tensor, student_temp: float = 0.1, teacher_temp: float = 0.04
) -> Tensor:
    """DINO (Caron et al. 2021): cross-entropy H(softmax((t - c) / T_t), softmax(s / T_s)),
    averaged over the batch. Pass the teacher logits detached."""
    p_t = F.softmax((teacher - center) / teacher_temp, dim=-1)
    return -(p_t * F.log_softmax(student / student_temp, dim=-1)).sum(-1).mean()


# ------------------------------------------------------------------------------- clustering
@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, eps: float = 0.05, iters: int = 3) -> Tensor:
    """SwAV's equipartitioned soft assignments: ``Q = diag(u) exp(scores / eps) diag(v)``
    rescaled so that every prototype gets mass 1/K and every sample 1/B; returned per-sample
    normalised (each row sums to 1). ``scores``: ``(B, K)``."""
    from .distributed import all_reduce_sum, max_over_ranks, world_size

    # under data-parallel training the batch is the global one: sums over samples are all-reduced
    q = torch.exp((scores - max_over_ranks(scores.max())) / eps).t()  # (K, B); the shift cancels
    k, b = q.shape[0], q.shape[1] * world_size()
    q = q / all_reduce_sum(q.sum())
    for _ in range(iters):
        q = q / all_reduce_sum(q.sum(dim=1, keepdim=True)) / k
        q = q / q.sum(dim=0, keepdim=True) / b
    return (q * b).t()


def swav_loss(scores1: Tensor, scores2: Tensor, q1: Tensor, q2: Tensor, temperature: float = 0.1) -> Tensor:
    """SwAV swapped prediction: -1/2 [sum q2 log softmax(s1 / T) + sum q1 log softmax(s2 / T)]."""
    l1 = -(q2 * F.log_softmax(scores1 / temperature, dim=1)).sum(1).mean()
    l2 = -(q1 * F.log_softmax(scores2 / temperature, dim=1)).sum(1).mean()
    return (l1 + l2) / 2


# ------------------------------------------------------------------------------- predictive
def squared_distance(a: Tensor, b: Tensor) -> Tensor:
    """Mean over the batch of ||a_i - b_i||^2 (sum over dimensions): the basic JEPA energy."""
    return (a - b).pow(2).sum(-1).mean()


def pairwise_squared_distance(a: Tensor, b: Tensor) -> Tensor:
    """Global pairwise JEPA energy: mean over all (i, j) of ||a_i - b_j||^2."""
    return ((a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)).mean()


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """MAE's loss: per-token mean squared error, averaged over the tokens where ``mask`` is 1.
    ``pred``, ``target``: ``(B, L, P)``; ``mask``: ``(B, L)``."""
    per_token = (pred - target).pow(2).mean(-1)
    return (per_token * mask).sum() / mask.sum().clamp_min(1)


#: The ``kind`` values of :func:`token_regression`.
TOKEN_REGRESSION = ("mse", "smooth_l1")


def token_regression(pred: Tensor, target: Tensor, kind: str = "mse") -> Tensor:
    """I-JEPA's prediction loss between predicted and target token representations, averaged over
    every element. ``"mse"``: mean squared error (the paper's L2). ``"smooth_l1"``: the reference
    code's (facebookresearch/ijepa ``src/train.py``: ``F.smooth_l1_loss(z, h)`` on the layer-normed
    targets, i.e. beta 1 and mean reduction): ``0.5 d^2`` where ``|d| < 1``, else ``|d| - 0.5``."""
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, reduction="mean", beta=1.0)
    raise ValueError(f"token_regression: kind must be one of {TOKEN_REGRESSION}, got {kind!r}")


# ------------------------------------------------------------------------------- score-based
def dsm_loss(score: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """Denoising score matching (Vincent 2011; Song & Ermon 2019 weighting lambda = sigma^2):
    1/2 E[ sigma^2 || s(x + noise) + noise / sigma^2 ||^2 ] with ``noise ~ N(0, sigma^2 I)``.

    ``score`` and ``noise``: ``(B, ...)``; ``sigma``: scalar or ``(B,)``. The target of the
    score is ``-noise / sigma^2``; sum over the data dimensions, mean over the batch.
    """
    b = score.shape[0]
    s = torch.as_tensor(sigma, dtype=score.dtype, device=score.device).reshape(-1, *([1] * (score.dim() - 1)))
    if s.shape[0] == 1 and b > 1:
        s = s.expand(b, *s.shape[1:])
    r = (s * score + noise / s).reshape(b, -1)  # sigma * (score - target)
    return 0.5 * r.pow(2).sum(1).mean()


__all__ = [
    "info_nce",
    "negative_cosine",
    "byol_loss",
    "invariance_loss",
    "variance_loss",
    "covariance_loss",
    "vicreg_terms",
    "vicreg",
    "barlow_twins_loss",
    "sigreg",
    "lejepa_invariance",
    "cross_view_info_nce",
    "info_nce_queue",
    "margin_contrastive",
    "dino_loss",
    "sinkhorn_knopp",
    "swav_loss",
    "squared_distance",
    "pairwise_squared_distance",
    "masked_mse",
    "token_regression",
    "dsm_loss",
]
