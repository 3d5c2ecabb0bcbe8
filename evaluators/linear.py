"""Linear probe on frozen, cached embeddings: multinomial logistic regression, top-1/top-5 on
the test split (percent).

Two modes (option ``mode``):

``fast`` (default)
    Full-batch L-BFGS (float32, on ``device``) with an L2 penalty chosen from a small fixed
    sweep (``weight_decays``) on a held-out ``val_frac`` of the TRAINING set (seeded,
    class-stratified); the sweep fits use at most ``sweep_samples`` of the remaining training
    samples (seeded) and ``sweep_iter`` L-BFGS iterations each. The test set is never looked at
    until the final refit on the whole training set (``max_iter`` iterations) with the chosen
    penalty is scored. Features are centred and
    divided by one global scale (their RMS) so the sweep is scale-free. Objective:
    mean cross-entropy + wd/2 · ‖W‖² (bias unpenalised). The fit is preconditioned: the weights
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
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ssl_bench.errors import ConfigError
from ssl_bench.evaluator import Evaluator, Metric
from ssl_bench.registry import register_evaluator
from ssl_bench.sampling import subsample
from ssl_bench.stats import small_work_threads

WEIGHT_DECAYS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


def encode_labels(train_y, test_y) -> tuple[np.ndarray, np.ndarray, int]:
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


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    k_max = min(max(ks), logits.shape[1])
    top = logits.topk(k_max, dim=1).indices
    hit = top == y[:, None]
    return {k: float(hit[:, :min(k, k_max)].any(1).float().mean() * 100) for k in ks}


class Preconditioner:
    """W = U diag(p) V, p = (e + wd)^-1/2: the fit's change of variables (see module docstring)."""

    def __init__(self, x: torch.Tensor, max_samples: int = 10_000, seed: int = 0, max_dim: int = 4096):
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


def fit_logreg(x: torch.Tensor, y: torch.Tensor, num_classes: int, wd: float, pre: Preconditioner,
               init: tuple[torch.Tensor, torch.Tensor] | None = None, max_iter: int = 100,
               tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
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
    opt = torch.optim.LBFGS([v, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=tol)

    def closure():
        opt.zero_grad()
        pv = p[:, None] * v
        loss = F.cross_entropy(x @ pre.to_w(v, p) + b, y) + 0.5 * wd * pv.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return pre.to_w(v, p).detach(), b.detach()


def linear_fast(train_x, train_y, test_x, test_y, weight_decays=WEIGHT_DECAYS, val_frac: float = 0.1,
                seed: int = 0, max_iter: int = 100, device: str = "cpu", sweep_samples: int = 10_000,
                sweep_iter: int = 40) -> tuple[dict[str, float], dict]:
    n, d = np.shape(train_x)
    with small_work_threads(n * d * 10 if device == "cpu" else float("inf")):
        return _linear_fast(train_x, train_y, test_x, test_y, weight_decays, val_frac, seed, max_iter, device,
                            sweep_samples, sweep_iter)


def _linear_fast(train_x, train_y, test_x, test_y, weight_decays, val_frac, seed, max_iter, device,
                 sweep_samples, sweep_iter):
    ytr_np, yte_np, c = encode_labels(train_y, test_y)
    dev = torch.device(device)
    xtr = torch.as_tensor(np.asarray(train_x, dtype=np.float32), device=dev)
    mean = xtr.mean(0)
    rms = (xtr - mean).pow(2).mean().sqrt().clamp_min(1e-12)
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
    xte = (torch.as_tensor(np.asarray(test_x, dtype=np.float32), device=dev) - mean) / rms
    with torch.no_grad():
        acc = topk_accuracy(xte @ w + b, torch.as_tensor(yte_np, device=dev))
    return {"top1": acc[1], "top5": acc[5]}, {"weight_decay": best, "val_top1": val_acc}


def linear_protocol(train_x, train_y, test_x, test_y, epochs: int = 100, batch_size: int = 256,
                    lr: float = 0.1, momentum: float = 0.9, seed: int = 0,
                    device: str = "cpu") -> tuple[dict[str, float], dict]:
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
            idx = perm[i:i + batch_size]
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


@register_evaluator("linear")
class Linear(Evaluator):
    defaults = dict(mode="fast", weight_decays=list(WEIGHT_DECAYS), val_frac=0.1, max_iter=40, seed=0,
                    sweep_samples=5000, sweep_iter=25, epochs=100, batch_size=256, lr=0.1, device="cpu")
    metrics = (
        Metric("top1", "linear top1", "%", True, "linear probe on frozen features (fast: L-BFGS logistic "
               "regression, L2 chosen on a held-out train split; protocol: SGD), top-1 accuracy", headline=True),
        Metric("top5", "linear top5", "%", True, "linear probe top-5 accuracy"),
    )
    order = 20
    legend_options = ("mode",)
    preset_options = {"smoke": dict(weight_decays=[1e-2, 1e-3, 1e-4], max_iter=50, sweep_iter=20),
                      "full": dict(sweep_samples=30_000)}

    def evaluate(self, emb):
        o = self.options
        if o["mode"] == "fast":
            metrics, self.details = linear_fast(emb.train_x, emb.train_y, emb.test_x, emb.test_y,
                                                o["weight_decays"], o["val_frac"], o["seed"], o["max_iter"],
                                                o["device"], o["sweep_samples"], o["sweep_iter"])
        elif o["mode"] == "protocol":
            metrics, self.details = linear_protocol(emb.train_x, emb.train_y, emb.test_x, emb.test_y, o["epochs"],
                                                    o["batch_size"], o["lr"], seed=o["seed"], device=o["device"])
        else:
            raise ConfigError(f"linear: unknown mode {o['mode']!r}; known: fast, protocol")
        return metrics
