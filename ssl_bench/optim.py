"""Optimisers and the learning-rate schedule the harness uses for every method."""
from __future__ import annotations

import math

import torch
from torch import nn

from .errors import ConfigError

DEFAULT_LR = {"adamw": 2e-3, "sgd": 0.05, "lars": 0.3}
DEFAULT_WD = {"adamw": 1e-4, "sgd": 5e-4, "lars": 1e-6}


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratio (You et al. 2017) for weight matrices;
    biases and norm parameters (1-D) get plain SGD and no weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim > 1:
                    d = d.add(p, alpha=group["weight_decay"])
                    pn, dn = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    trust = torch.where((pn > 0) & (dn > 0), group["eta"] * pn / dn, torch.ones_like(pn))
                    d = d.mul(trust)
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = torch.clone(d).detach()
                else:
                    buf.mul_(group["momentum"]).add_(d)
                p.add_(buf, alpha=-group["lr"])
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-D tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(name: str, model: nn.Module, lr: float | None, weight_decay: float | None) -> torch.optim.Optimizer:
    lr = DEFAULT_LR[name] if lr is None else lr
    wd = DEFAULT_WD[name] if weight_decay is None else weight_decay
    groups = param_groups(model, wd)
    if not any(g["params"] for g in groups):
        raise ConfigError("the method has no trainable parameters")
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if name == "lars":
        return LARS(groups, lr=lr)
    raise ConfigError(f"unknown optimizer {name!r}")


def warmup_cosine(total_steps: int, warmup_frac: float):
    """Multiplier for LambdaLR: linear warm-up then cosine decay to 0."""
    warm = int(total_steps * warmup_frac)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return f
