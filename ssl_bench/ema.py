"""EMA target networks: one naming scheme and one momentum schedule for every method that has one.

Naming: a method's target network for sub-module ``X`` is the attribute ``target_X``, built with
:func:`ssl_bench.heads.frozen_copy` (``target_backbone``, ``target_projector``, ``target_head``).
:func:`update_targets` finds them by that name, so no method lists its pairs twice.

Schedule. Papers give a base momentum tau (BYOL 0.996, DINO 0.996, MoCo v3 0.99) tuned for
10^4-10^5+ steps; with cosine to 1 over ``T`` steps the fraction of the random initial weights
left in the final target is prod_t tau_t ~= exp(-(1 - tau_0) T / 2). At the quick preset's 312
steps a cosine from 0.99 leaves exp(-1.56) ~= 21 % of the init in the target that the online
network regresses onto (and that DINO / I-JEPA evaluate). The rule here scales the starting
momentum to the run length::

    1 - tau_0 = min(1, max(1 - tau_paper, STEPS_C / total_steps))

so the target keeps about exp(-STEPS_C / 2) = 0.7 % (cosine) or exp(-STEPS_C) (constant) of its
init on short runs, while long runs (total_steps >= STEPS_C / (1 - tau_paper), i.e. >= 1000
steps for tau 0.99) keep the paper's tau exactly. ``tau = 0`` (the target is the online network
each step, an ablation) stays 0. Without ``total_steps`` (a method used outside the trainer)
the paper's tau is used unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .heads import cosine_tau, ema_update_

#: 1 - tau_0 >= STEPS_C / total_steps: the target forgets its init to exp(-STEPS_C / 2) under a cosine.
STEPS_C = 10.0
PREFIX = "target_"


def base_tau(paper_tau: float, total_steps: int | None, c: float = STEPS_C) -> float:
    """The starting momentum for a run of ``total_steps`` optimiser steps (see the module rule)."""
    if total_steps is None or total_steps <= 0 or paper_tau <= 0:
        return float(paper_tau)
    return 1.0 - min(1.0, max(1.0 - paper_tau, c / total_steps))


def tau_at(
    paper_tau: float, progress: float, total_steps: int | None, cosine: bool = True, c: float = STEPS_C
) -> float:
    """Momentum after the step at ``progress`` in [0, 1]: cosine from the scaled base to 1, or constant."""
    t0 = base_tau(paper_tau, total_steps, c)
    return cosine_tau(t0, progress) if cosine else t0


def init_fraction(paper_tau: float, total_steps: int, cosine: bool = True, c: float = STEPS_C) -> float:
    """Weight of the initial parameters in the target after ``total_steps`` updates: prod_t tau_t
    (the trainer calls ``on_step_end(step / total_steps)`` for step = 1..total_steps)."""
    log = 0.0
    for step in range(1, total_steps + 1):
        tau = tau_at(paper_tau, step / total_steps, total_steps, cosine, c)
        if tau <= 0:
            return 0.0
        log += math.log(tau)
    return math.exp(log)


def target_pairs(method: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """``(target_X, X)`` for every direct child named ``target_X`` of ``method``."""
    pairs = []
    for name, target in method.named_children():
        if name.startswith(PREFIX):
            online = getattr(method, name[len(PREFIX) :], None)
            if not isinstance(online, nn.Module):
                raise AttributeError(f"{type(method).__name__}.{name} has no online module {name[len(PREFIX) :]!r}")
            pairs.append((target, online))
    return pairs


@torch.no_grad()
def update_targets(method: nn.Module, progress: float) -> float:
    """EMA-update every ``target_X`` of ``method`` from ``X`` with the scheduled momentum.

    Reads ``method.hp.ema_tau`` / ``method.hp.ema_cosine`` / ``method.hp.ema_c`` (the rule's
    constant, :data:`STEPS_C` when the method has no such option) and ``method.total_steps`` (set
    by the trainer); returns the momentum used."""
    hp: Any = method.hp
    tau = tau_at(
        hp.ema_tau,
        progress,
        getattr(method, "total_steps", None),
        getattr(hp, "ema_cosine", True),
        getattr(hp, "ema_c", STEPS_C),
    )
    for target, online in target_pairs(method):
        ema_update_(target, online, tau)
    return tau
