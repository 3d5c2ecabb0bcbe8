"""Small head modules and the EMA helpers that distillation methods share."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


class MLPHead(nn.Module):
    """``num_layers`` Linear layers; BN + ReLU between them, optional BN after the last.

    SimCLR projector: ``MLPHead(d, 2048, 128, num_layers=2)``; BYOL predictor:
    ``MLPHead(256, 4096, 256, num_layers=2)``; VICReg expander: ``MLPHead(d, 8192, 8192, 3)``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
                 batch_norm: bool = True, last_bn: bool = False, bias_last: bool = True):
        super().__init__()
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(d, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            d = hidden_dim
        layers.append(nn.Linear(d, out_dim, bias=bias_last and not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with gradients off: the target network of BYOL / MoCo / EMA-JEPA."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, for parameters and floating buffers."""
    tp = list(target.parameters())
    op = list(online.parameters())
    torch._foreach_mul_(tp, tau)
    torch._foreach_add_(tp, op, alpha=1.0 - tau)
    for tb, ob in zip(target.buffers(), online.buffers()):
        if tb.dtype.is_floating_point:
            tb.mul_(tau).add_(ob, alpha=1.0 - tau)
        else:
            tb.copy_(ob)


def cosine_tau(base_tau: float, progress: float, final_tau: float = 1.0) -> float:
    """BYOL's schedule: tau goes from ``base_tau`` to ``final_tau`` along a cosine."""
    progress = min(max(progress, 0.0), 1.0)
    return final_tau - (final_tau - base_tau) * (math.cos(math.pi * progress) + 1) / 2
