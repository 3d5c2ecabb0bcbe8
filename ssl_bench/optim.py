"""Optimisers and the learning-rate schedule the harness uses for every method."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, TYPE_CHECKING, overload

import torch
from torch import nn

from .errors import ConfigError

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT

    from .method import Method

DEFAULT_LR = {"adamw": 2e-3, "sgd": 0.05, "lars": 0.3}
DEFAULT_WD = {"adamw": 1e-4, "sgd": 5e-4, "lars": 1e-6}


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratio (You et al. 2017) for weight matrices;
    biases and norm parameters (1-D) get plain SGD and no weight decay.

    A weight matrix's step direction ``d = grad + weight_decay * p`` is scaled by
    ``eta * ||p|| / ||d||``, with the trust coefficient ``eta`` = 0.001 as in the references
    (moco-v3 ``optimizer.LARS(trust_coefficient=0.001)``, Barlow Twins' and VICReg's ``eta=0.001``,
    SimCLR's LARS ``eeta=0.001``); it was 0.02 before, which no default recipe used."""

    def __init__(
        self, params: ParamsT, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001
    ) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @overload
    def step(self, closure: None = None) -> None: ...
    @overload
    def step(self, closure: Callable[[], float]) -> float: ...
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
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


def param_groups(model: nn.Module, weight_decay: float, lr: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-D tensors); a module listed in
    ``model.lr_scales()`` (name prefix -> multiplier, e.g. ``{"predictor": 10.0}``) gets its own
    groups with ``lr * multiplier`` (the schedule then scales every group alike)."""
    lr_scales = getattr(model, "lr_scales", None)
    scales: dict[str, float] = lr_scales() if callable(lr_scales) else {}
    names = sorted(scales, key=len, reverse=True)  # the longest matching prefix wins
    bad = [n for n in names if not isinstance(scales[n], (int, float)) or not scales[n] > 0]
    if bad:
        raise ConfigError(f"learning-rate multipliers must be > 0, got {', '.join(f'{n}={scales[n]!r}' for n in bad)}")
    groups: dict[tuple[bool, float], list] = {(True, 1.0): [], (False, 1.0): []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = next((float(scales[n]) for n in names if name == n or name.startswith(n + ".")), 1.0)
            groups.setdefault((p.ndim > 1, scale), []).append(p)
    out = []
    for (decay, scale), params in groups.items():
        g = {"params": params, "weight_decay": weight_decay if decay else 0.0}
        if scale != 1.0:
            g["lr"] = lr * scale
        out.append(g)
    return out


def make_optimizer(name: str, model: nn.Module, lr: float | None, weight_decay: float | None) -> torch.optim.Optimizer:
    lr = DEFAULT_LR[name] if lr is None else lr
    wd = DEFAULT_WD[name] if weight_decay is None else weight_decay
    groups = param_groups(model, wd, lr)
    if not any(g["params"] for g in groups):
        raise ConfigError("the method has no trainable parameters")
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if name == "lars":
        return LARS(groups, lr=lr)
    raise ConfigError(f"unknown optimizer {name!r}")


def optim_choice(
    optimizer: str, lr: float | None, weight_decay: float | None, batch_size: int, method: Any
) -> tuple[str, float | None, float | None, dict[str, Any]]:
    """(optimizer, lr, weight decay, recipe entries) of a run: the config's optimizer, lr and weight
    decay, else the method's preferences (``optim_defaults``: lr, weight_decay). ``"paper"`` takes
    the method's declared paper optimiser (``paper_optim``: ``optimizer``, ``lr``, ``weight_decay``,
    and ``lr_batch`` where the paper scales its lr linearly with the batch: lr x batch_size /
    lr_batch), the config's lr and weight decay still winning; the recipe then records which
    optimiser it resolved to. ``None`` means the optimiser's default (``DEFAULT_LR``/``DEFAULT_WD``)."""
    prefs = getattr(method, "optim_defaults", {}) or {}
    if optimizer != "paper":
        return (
            optimizer,
            lr if lr is not None else prefs.get("lr"),
            weight_decay if weight_decay is not None else prefs.get("weight_decay"),
            {},
        )
    paper = getattr(method, "paper_optim", {}) or {}
    if not paper:
        name = getattr(method, "registry_name", "?")
        raise ConfigError(f"optimizer 'paper': method {name!r} declares no paper optimiser; use adamw, sgd or lars")
    name = str(paper["optimizer"])
    scale = batch_size / float(paper["lr_batch"]) if paper.get("lr_batch") else 1.0
    lr = lr if lr is not None else float(paper["lr"]) * scale
    wd = weight_decay if weight_decay is not None else float(paper["weight_decay"])
    return name, lr, wd, {"optim.optimizer": name}


def warmup_cosine(total_steps: int, warmup_frac: float) -> Callable[[int], float]:
    """Multiplier for LambdaLR: linear warm-up then cosine decay to 0."""
    warm = int(total_steps * warmup_frac)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return f


# ------------------------------------------------------------ per-step recipe pieces (harness)
def drop_gradients_(model: nn.Module, prefixes: Iterable[str]) -> int:
    """Set ``p.grad = None`` for every parameter whose name is a prefix in ``prefixes`` or lies
    under one: the optimiser then skips it this step. Returns how many were dropped."""
    prefixes = tuple(prefixes)
    n = 0
    for name, p in model.named_parameters():
        if p.grad is not None and any(name == q or name.startswith(q + ".") for q in prefixes):
            p.grad = None
            n += 1
    return n


@torch.no_grad()
def clip_gradients_(model: nn.Module, max_norm: float) -> None:
    """DINO's per-tensor clipping: each gradient g becomes g * min(1, max_norm / (||g|| + 1e-6))
    (no host sync)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    norms = torch._foreach_norm(grads)
    coefs = [(max_norm / (n + 1e-6)).clamp(max=1.0) for n in norms]
    torch._foreach_mul_(grads, coefs)


def cosine_value(start: float, end: float, progress: float) -> float:
    """``start`` at progress 0, ``end`` at progress 1, along a half cosine (DINO's cosine_scheduler)."""
    progress = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def set_weight_decay_(opt: torch.optim.Optimizer, base: list[float], end: float, progress: float) -> None:
    """Groups whose configured weight decay ``base[i]`` is > 0 get ``cosine_value(base[i], end, progress)``;
    the others (biases, norms) keep 0."""
    for g, b in zip(opt.param_groups, base, strict=True):
        if b > 0:
            g["weight_decay"] = cosine_value(b, end, progress)


def update_(
    method: Method,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    loss: torch.Tensor,
    step: int,
    total_steps: int,
    wd_base: list[float],
    wd_end: float | None,
) -> None:
    """One update after the forward, the same for every method (the trainer's and the benchmarks'):
    backward, the method's declared recipe pieces (frozen parameters, gradient clipping, the
    weight-decay schedule), the optimiser and learning-rate steps, then ``on_step_end`` (EMA
    targets). ``step`` counts the updates before this one."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    frozen = method.frozen_parameters()
    if frozen:
        drop_gradients_(method, frozen)
    clip = method.grad_clip()
    if clip > 0:
        clip_gradients_(method, clip)
    if wd_end is not None:
        set_weight_decay_(opt, wd_base, wd_end, step / total_steps)
    opt.step()
    sched.step()
    method.on_step_end((step + 1) / total_steps)
