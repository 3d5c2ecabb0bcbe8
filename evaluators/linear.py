"""Linear probe on frozen, cached embeddings: multinomial logistic regression, top-1/top-5 on
the test split (percent).

Two modes (option ``mode``):

``fast`` (default)
    Full-batch L-BFGS (float32, on ``device``) with an L2 penalty chosen from a small fixed
    sweep (``weight_decays``) on a held-out ``val_frac`` of the TRAINING set (seeded,
    class-stratified); the sweep fits use the rest of the training set (at most
    ``sweep_samples`` of it, a seeded subset) and up to ``sweep_iter`` L-BFGS iterations each.
    The test set is never looked at until the final refit on the whole training set (up to
    ``max_iter`` iterations) with the chosen penalty is scored. Features are standardised per
    feature with the training statistics (``standardize``; false: centred and divided by one
    global scale, their RMS). Objective: mean cross-entropy + wd/2 · ‖W‖² (bias unpenalised),
    i.e. scikit-learn's ``LogisticRegression`` with C = 1 / (wd · n). The fits stop when
    converged (L-BFGS tolerances), and reach the optimum: the default probe equals a converged
    scikit-learn probe of the same protocol within 0.1 point on Fashion-MNIST pixels and a random
    ReLU projection (``benchmarks/linear_vs_sklearn.py``, docs/benchmarks.md). The defaults
    before #34 (one global scale, a 5,000-sample sweep of 25 iterations, 40 final iterations)
    stopped short of it by 0.4-1.2 points. The fit is preconditioned: the weights
    are written W = U diag((e + wd)^-1/2) V with U, e the eigenvectors/eigenvalues of the feature
    covariance (estimated on at most 10,000 samples), which makes the problem well conditioned
    so L-BFGS needs few iterations; this changes the optimisation path, not the optimum. The
    sweep runs from the strongest to the weakest penalty, each fit warm-started from the last.
    The chosen penalty and the validation accuracies are kept in ``evaluator.details``.

``protocol``
    The standard SGD recipe of solo-learn / lightly linear evaluation, on cached features: a
    linear layer on per-feature standardised features (MAE's BatchNorm-without-affine before
    the linear layer, with the training statistics), SGD momentum 0.9, lr 0.1 x batch/256,
    no weight decay, batch 256, 100 epochs, cosine schedule, seeded. No augmentation (the
    features are cached).

``stream``
    For embeddings on disk (a streamed dataset's memory-mapped ``.npy``, :mod:`ssl_bench.ondisk`)
    that should not be loaded whole: mini-batch SGD over the file, read chunk by chunk (chunks
    in a seeded order, rows shuffled within a chunk), on ``device``. One linear head per value
    of ``weight_decays`` is trained in the same pass (as DINOv2 trains many heads at once):
    per-feature standardised inputs (statistics from one pass over the file), SGD momentum 0.9,
    lr ``lr`` x batch/256 with a cosine schedule over ``stream_epochs``, each head with its own
    L2 penalty. The head with the best accuracy on the held-out ``val_frac`` of the training
    rows (stratified, seeded) is scored on the test split. Memory: one chunk and the heads.
    ``fast`` on on-disk embeddings of more than ``max_in_memory`` rows runs ``stream``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike

from ssl_bench import ondisk
from ssl_bench.embeddings import Embeddings
from ssl_bench.errors import ConfigError
from ssl_bench.evaluator import Evaluator, Metric
from ssl_bench.registry import register_evaluator
from ssl_bench.sampling import subsample
from ssl_bench.stats import small_work_threads

WEIGHT_DECAYS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


def encode_labels(train_y: ArrayLike, test_y: ArrayLike) -> tuple[np.ndarray, np.ndarray, int]:
    """Map the training classes to 0..C-1; a test label unseen in training becomes -1 (always wrong)."""
    classes, ytr = np.unique(np.asarray(train_y), return_inverse=True)
    test_y = np.asarray(test_y)
    pos = np.searchsorted(classes, test_y).clip(0, len(classes) - 1)
    yte = np.where(classes[pos] == test_y, pos, -1)
    return ytr.astype(np.int64), yte.astype(np.int64), len(classes)


def stratified_split(y: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held-out) indices: ``frac`` of each class held out (at least one when the class has two)."""
    rng = np.random.default_rng(seed)
    fit, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(frac * len(idx)))
        k = min(max(k, 1 if len(idx) > 1 else 0), len(idx) - 1) if len(idx) > 1 else 0
        val.append(idx[:k])
        fit.append(idx[k:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(val))


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    k_max = min(max(ks), logits.shape[1])
    top = logits.topk(k_max, dim=1).indices
    hit = top == y[:, None]
    return {k: float(hit[:, : min(k, k_max)].any(1).float().mean() * 100) for k in ks}


class Preconditioner:
    """W = U diag(p) V, p = (e + wd)^-1/2: the fit's change of variables (see module docstring)."""

    def __init__(self, x: torch.Tensor, max_samples: int = 10_000, seed: int = 0, max_dim: int = 4096) -> None:
        self.u: torch.Tensor | None  # eigenvectors; None: the identity
        d = x.shape[1]
        if d > max_dim:  # eigendecomposition too costly: plain (identity) parametrisation
            self.u, self.e = None, torch.ones(d, dtype=x.dtype, device=x.device)
            return
        x = subsample(x, max_samples, seed, sort=False)
        xc = (x - x.mean(0)).double()
        e, u = torch.linalg.eigh(xc.T @ xc / max(len(xc) - 1, 1))
        self.u, self.e = u.to(x.dtype), e.clamp_min(0).to(x.dtype)

    def scale(self, wd: float) -> torch.Tensor:
        return (self.e + wd).rsqrt()

    def to_w(self, v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        pv = p[:, None] * v
        return pv if self.u is None else self.u @ pv

    def to_v(self, w: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        uw = w if self.u is None else self.u.T @ w
        return uw / p[:, None]


class _Project(torch.autograd.Function):
    """``x @ w`` for a constant ``x`` whose backward forms dL/dw as ``(g.T @ x).T``: autograd's
    ``x.T @ g`` takes a slow BLAS path for a tall ``x`` (0.18 s against 0.017 s for
    60,000 x 128 x 10 on one thread of a 2-core EPYC), and the probe's fits are made of these."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x @ w

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[None, torch.Tensor]:
        (x,) = ctx.saved_tensors
        return None, (g.T @ x).T


def feature_scale(xc: torch.Tensor, standardize: bool) -> torch.Tensor:
    """The divisor of the centred features ``xc``: each feature's standard deviation
    (``standardize``; a feature whose deviation is below 1e-6 of the largest one is treated as
    constant and divided by the largest), else one global scale, the RMS of all entries."""
    if not standardize:
        return xc.pow(2).mean().sqrt().clamp_min(1e-12)
    std = xc.pow(2).mean(0).sqrt()
    top = std.max().clamp_min(1e-12)
    return torch.where(std > 1e-6 * top, std, top)


def fit_logreg(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    wd: float,
    pre: Preconditioner,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean CE(x W + b, y) + wd/2 ‖W‖² with L-BFGS; returns (W, b)."""
    d = x.shape[1]
    p = pre.scale(wd)
    if init is None:
        w0, b0 = torch.zeros(d, num_classes, dtype=x.dtype, device=x.device), None
    else:
        w0, b0 = init
    v = pre.to_v(w0, p).clone().requires_grad_(True)
    if b0 is None:  # start from the class log-priors
        counts = torch.bincount(y, minlength=num_classes).to(x.dtype).clamp_min(0.5)
        b0 = (counts / counts.sum()).log()
    b = b0.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [v, b],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-7,
        tolerance_change=tol,
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        pv = p[:, None] * v
        loss = F.cross_entropy(_Project.apply(x, pre.to_w(v, p)) + b, y) + 0.5 * wd * pv.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return pre.to_w(v, p).detach(), b.detach()


def linear_fast(
    train_x: np.ndarray,
    train_y: ArrayLike,
    test_x: np.ndarray,
    test_y: ArrayLike,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    val_frac: float = 0.1,
    seed: int = 0,
    max_iter: int = 100,
    device: str = "cpu",
    sweep_samples: int = 1_000_000,
    sweep_iter: int = 100,
    standardize: bool = True,
) -> tuple[dict[str, float], dict]:
    n, d = np.shape(train_x)
    with small_work_threads(n * d * 10 if device == "cpu" else float("inf")):
        return _linear_fast(
            train_x,
            train_y,
            test_x,
            test_y,
            weight_decays,
            val_frac,
            seed,
            max_iter,
            device,
            sweep_samples,
            sweep_iter,
            standardize,
        )


def _linear_fast(
    train_x: np.ndarray,
    train_y: ArrayLike,
    test_x: np.ndarray,
    test_y: ArrayLike,
    weight_decays: Sequence[float],
    val_frac: float,
    seed: int,
    max_iter: int,
    device: str,
    sweep_samples: int,
    sweep_iter: int,
    standardize: bool = True,
) -> tuple[dict[str, float], dict[str, Any]]:
    _, yte_np, _ = encode_labels(train_y, test_y)
    probe, details = fit_fast_probe(
        train_x, train_y, weight_decays, val_frac, seed, max_iter, device, sweep_samples, sweep_iter, standardize
    )
    with torch.no_grad():
        acc = topk_accuracy(probe.logits(test_x), torch.as_tensor(yte_np, device=probe.w.device))
    return {"top1": acc[1], "top5": acc[5]}, details


class FastProbe:
    """A fitted ``fast`` probe: the training statistics that standardise the features, and W, b."""

    def __init__(self, classes: np.ndarray, mean: torch.Tensor, scale: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
        self.classes, self.mean, self.scale, self.w, self.b = classes, mean, scale, w, b

    @torch.no_grad()
    def logits(self, x: ArrayLike) -> torch.Tensor:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.w.device)
        return ((xt - self.mean) / self.scale) @ self.w + self.b

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The predicted labels (the training labels' values) of the rows of ``x``."""
        return self.classes[self.logits(x).argmax(1).cpu().numpy()]


def fit_fast_probe(
    train_x: np.ndarray,
    train_y: ArrayLike,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    val_frac: float = 0.1,
    seed: int = 0,
    max_iter: int = 100,
    device: str = "cpu",
    sweep_samples: int = 1_000_000,
    sweep_iter: int = 100,
    standardize: bool = True,
) -> tuple[FastProbe, dict[str, Any]]:
    """The ``fast`` probe fitted on the training split (penalty sweep, then the refit); see the
    module docstring. Returns the probe and its details (chosen penalty, validation accuracies)."""
    classes, ytr_np = np.unique(np.asarray(train_y), return_inverse=True)
    c = len(classes)
    dev = torch.device(device)
    xtr = torch.as_tensor(np.asarray(train_x, dtype=np.float32), device=dev)
    mean = xtr.mean(0)
    rms = feature_scale(xtr - mean, standardize)
    xtr = (xtr - mean) / rms
    ytr = torch.as_tensor(ytr_np, device=dev)
    fit_idx, val_idx = stratified_split(ytr_np, val_frac, seed)
    if sweep_samples:  # the sweep runs on a seeded subset of the fit part (fit_idx is sorted: so is the subset)
        fit_idx = subsample(fit_idx, sweep_samples, np.random.default_rng(seed + 1))
    fi, vi = torch.as_tensor(fit_idx, device=dev), torch.as_tensor(val_idx, device=dev)
    xf, yf = xtr[fi], ytr[fi]
    pre = Preconditioner(xtr, seed=seed)
    wds = sorted((float(w) for w in weight_decays), reverse=True)
    if not wds:
        raise ConfigError("linear: weight_decays is empty")
    val_acc, sols, init = {}, {}, None
    for wd in wds:  # strongest penalty first; each fit starts from the previous solution
        init = fit_logreg(xf, yf, c, wd, pre, init, sweep_iter)
        sols[wd] = init
        if len(vi):
            with torch.no_grad():
                val_acc[wd] = topk_accuracy(xtr[vi] @ init[0] + init[1], ytr[vi], (1,))[1]
        else:
            val_acc[wd] = 0.0
    best = max(wds, key=lambda w: (val_acc[w], w))  # ties: the stronger penalty
    w, b = fit_logreg(xtr, ytr, c, best, pre, sols[best], max_iter) if len(vi) else sols[best]
    return FastProbe(classes, mean, rms, w, b), {"weight_decay": best, "val_top1": val_acc}


def linear_protocol(
    train_x: np.ndarray,
    train_y: ArrayLike,
    test_x: np.ndarray,
    test_y: ArrayLike,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 0.1,
    momentum: float = 0.9,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[dict[str, float], dict]:
    ytr_np, yte_np, c = encode_labels(train_y, test_y)
    dev = torch.device(device)
    xtr = torch.as_tensor(np.asarray(train_x, dtype=np.float32), device=dev)
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr = (xtr - mean) / std
    ytr = torch.as_tensor(ytr_np, device=dev)
    g = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(xtr.shape[1], c).to(dev)
    with torch.no_grad():
        layer.weight.normal_(0, 0.01, generator=g)
        layer.bias.zero_()
    base_lr = lr * batch_size / 256
    opt = torch.optim.SGD(layer.parameters(), lr=base_lr, momentum=momentum, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(xtr) / batch_size)
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=g).to(dev)
        for i in range(0, len(xtr), batch_size):
            idx = perm[i : i + batch_size]
            for group in opt.param_groups:
                group["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(layer(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    xte = (torch.as_tensor(np.asarray(test_x, dtype=np.float32), device=dev) - mean) / std
    with torch.no_grad():
        acc = topk_accuracy(layer(xte), torch.as_tensor(yte_np, device=dev))
    return {"top1": acc[1], "top5": acc[5]}, {"final_loss": float(loss.detach())}


def linear_stream(
    train_x: np.ndarray,
    train_y: ArrayLike,
    test_x: np.ndarray,
    test_y: ArrayLike,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    val_frac: float = 0.1,
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 0.1,
    momentum: float = 0.9,
    device: str = "cpu",
    chunk_rows: int = 65_536,
) -> tuple[dict[str, float], dict]:
    """Several L2-penalised linear heads trained in one pass of mini-batch SGD over (on-disk)
    embeddings; the head best on a held-out part of the training rows is scored on the test rows."""
    ytr_np, yte_np, c = encode_labels(train_y, test_y)
    wds = sorted((float(w) for w in weight_decays), reverse=True)
    if not wds:
        raise ConfigError("linear: weight_decays is empty")
    dev = torch.device(device)
    n, d = int(len(train_x)), int(train_x.shape[1])
    # per-feature statistics in one pass (float64 sums)
    s1, s2 = np.zeros(d), np.zeros(d)
    for _, rows in ondisk.chunks(train_x, chunk_rows):
        r = rows.astype(np.float64)
        s1 += r.sum(0)
        s2 += (r * r).sum(0)
    mean = s1 / max(n, 1)
    std = np.sqrt(np.maximum(s2 / max(n, 1) - mean * mean, 0.0)).clip(1e-6)
    mean_t, std_t = (torch.as_tensor(v, dtype=torch.float32, device=dev) for v in (mean, std))
    fit_idx, val_idx = stratified_split(ytr_np, val_frac, seed)
    is_fit = np.zeros(n, dtype=bool)
    is_fit[fit_idx] = True
    g = torch.Generator().manual_seed(seed)
    h = len(wds)
    w = (torch.randn(h, d, c, generator=g) * 0.01).to(dev).requires_grad_()
    b = torch.zeros(h, 1, c, device=dev, requires_grad=True)
    wd_t = torch.tensor(wds, device=dev).view(h, 1, 1)
    base_lr = lr * batch_size / 256
    opt = torch.optim.SGD([w, b], lr=base_lr, momentum=momentum)
    n_chunks = max(1, math.ceil(n / chunk_rows))
    total = max(1, epochs * math.ceil(len(fit_idx) / batch_size))
    step, loss = 0, torch.zeros(())

    def prep(rows: np.ndarray) -> torch.Tensor:
        return (torch.as_tensor(rows, dtype=torch.float32, device=dev) - mean_t) / std_t

    for _ in range(epochs):
        for ci in torch.randperm(n_chunks, generator=g).tolist():
            lo = ci * chunk_rows
            rows = ondisk.read_rows(train_x, lo, lo + chunk_rows)
            keep = np.flatnonzero(is_fit[lo : lo + len(rows)])
            keep = keep[torch.randperm(len(keep), generator=g).numpy()]
            for i in range(0, len(keep), batch_size):
                sel = keep[i : i + batch_size]
                x = prep(rows[sel])
                y = torch.as_tensor(ytr_np[lo + sel], device=dev)
                for group in opt.param_groups:
                    group["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
                logits = torch.einsum("nd,hdc->hnc", x, w) + b
                ce = F.cross_entropy(logits.reshape(-1, c), y.repeat(h), reduction="none").view(h, -1).mean(1)
                loss = ce.sum() + (wd_t / 2 * w.pow(2)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1

    @torch.no_grad()
    def accuracy(
        x_rows: np.ndarray, y_np: np.ndarray, mask: np.ndarray | None = None
    ) -> torch.Tensor:  # (heads, 2): top-1 and top-5 hits
        hits = torch.zeros(h, 2, dtype=torch.float64)
        count = 0
        k5 = min(5, c)
        for lo, rows in ondisk.chunks(x_rows, chunk_rows):
            sel = np.arange(len(rows)) if mask is None else np.flatnonzero(mask[lo : lo + len(rows)])
            if not len(sel):
                continue
            logits = torch.einsum("nd,hdc->hnc", prep(rows[sel]), w) + b
            y = torch.as_tensor(y_np[lo + sel], device=dev)
            top = logits.topk(k5, dim=2).indices
            hits[:, 0] += (top[:, :, 0] == y).sum(1).double().cpu()
            hits[:, 1] += (top == y[None, :, None]).any(2).sum(1).double().cpu()
            count += len(sel)
        return hits / max(count, 1) * 100

    val = accuracy(train_x, ytr_np, ~is_fit) if len(val_idx) else torch.zeros(h, 2)
    best = max(range(h), key=lambda j: (float(val[j, 0]), wds[j]))  # ties: the stronger penalty
    test = accuracy(test_x, yte_np)
    return (
        {"top1": float(test[best, 0]), "top5": float(test[best, 1])},
        {
            "weight_decay": wds[best],
            "val_top1": {wd: float(val[j, 0]) for j, wd in enumerate(wds)},
            "final_loss": float(loss.detach()),
            "mode": "stream",
        },
    )


@register_evaluator("linear")
class Linear(Evaluator):
    defaults = dict(
        mode="fast",
        weight_decays=list(WEIGHT_DECAYS),
        val_frac=0.1,
        max_iter=100,
        seed=0,
        sweep_samples=1_000_000,
        sweep_iter=100,
        standardize=True,
        epochs=100,
        batch_size=256,
        lr=0.1,
        device="cpu",
        stream_epochs=10,
        max_in_memory=500_000,
    )
    metrics = (
        Metric(
            "top1",
            "linear top1",
            "%",
            True,
            "linear probe on frozen features (fast: L-BFGS logistic "
            "regression, L2 chosen on a held-out train split; protocol: SGD), top-1 accuracy",
            headline=True,
        ),
        Metric("top5", "linear top5", "%", True, "linear probe top-5 accuracy"),
    )
    order = 20
    legend_options = ("mode", "standardize")
    preset_options = {
        "smoke": dict(weight_decays=[1e-2, 1e-3, 1e-4], max_iter=50, sweep_iter=20),
    }

    def evaluate(self, emb: Embeddings) -> dict[str, float]:
        o = self.options
        mode = o["mode"]
        if mode == "fast" and ondisk.is_on_disk(emb.train_x) and len(emb.train_x) > o["max_in_memory"]:
            mode = "stream"  # too large to hold in memory: mini-batches over the file
        train_y, test_y = emb.labels()
        if mode == "stream":
            metrics, self.details = linear_stream(
                emb.train_x,
                train_y,
                emb.test_x,
                test_y,
                o["weight_decays"],
                o["val_frac"],
                o["seed"],
                o["stream_epochs"],
                o["batch_size"],
                o["lr"],
                device=o["device"],
            )
        elif mode == "fast":
            metrics, self.details = linear_fast(
                emb.train_x,
                train_y,
                emb.test_x,
                test_y,
                o["weight_decays"],
                o["val_frac"],
                o["seed"],
                o["max_iter"],
                o["device"],
                o["sweep_samples"],
                o["sweep_iter"],
                o["standardize"],
            )
        elif o["mode"] == "protocol":
            metrics, self.details = linear_protocol(
                emb.train_x,
                train_y,
                emb.test_x,
                test_y,
                o["epochs"],
                o["batch_size"],
                o["lr"],
                seed=o["seed"],
                device=o["device"],
            )
        else:
            raise ConfigError(f"linear: unknown mode {o['mode']!r}; known: fast, protocol, stream")
        return metrics
