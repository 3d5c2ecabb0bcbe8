"""Small head modules and the EMA helpers that distillation methods share."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn


class MLPHead(nn.Module):
    """``num_layers`` Linear layers; BN + ReLU between them, optional BN after the last (affine-free
    unless ``last_bn_affine``).

    SimCLR projector: ``MLPHead(d, 2048, 128, num_layers=2)``; BYOL predictor:
    ``MLPHead(256, 4096, 256, num_layers=2)``; VICReg expander: ``MLPHead(d, 8192, 8192, 3)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        batch_norm: bool = True,
        last_bn: bool = False,
        bias_last: bool = True,
        last_bn_affine: bool = False,
    ) -> None:
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
            layers.append(nn.BatchNorm1d(out_dim, affine=last_bn_affine))
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
    """target <- tau * target + (1 - tau) * online, for the PARAMETERS only.

    Buffers (BatchNorm running statistics) are the target's own: the target runs in train mode,
    so its BatchNorm layers track the statistics of the inputs the target itself sees. This is
    what the reference code does (MoCo v2/v3 ``_momentum_update_key_encoder`` /
    ``_update_momentum_encoder``, DINO's and I-JEPA's momentum loops all zip ``parameters()``
    only). Averaging the online buffers instead gives a target that is evaluated (DINO's
    teacher, I-JEPA's target) with the statistics of inputs it never sees: DINO's student
    sees the 14-px local crops, masked JEPA's online encoder sees masked images."""
    tp: list[torch.Tensor] = list(target.parameters())
    op: list[torch.Tensor] = list(online.parameters())
    torch._foreach_mul_(tp, tau)
    torch._foreach_add_(tp, op, alpha=1.0 - tau)


def cosine_tau(base_tau: float, progress: float, final_tau: float = 1.0) -> float:
    """BYOL's schedule: tau goes from ``base_tau`` to ``final_tau`` along a cosine."""
    progress = min(max(progress, 0.0), 1.0)
    return final_tau - (final_tau - base_tau) * (math.cos(math.pi * progress) + 1) / 2


class SplitBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are computed over ``num_splits`` contiguous
    sub-batches (chunk ``i`` = samples ``i*N/s .. (i+1)*N/s - 1``), each normalised with its own
    mean and variance: MoCo's single-device stand-in for shuffle-BN (the ``SplitBatchNorm`` of
    the official MoCo CIFAR demo). Running statistics are updated with the mean over chunks;
    evaluation uses them like ordinary BN. Works for ``(N, C)`` and ``(N, C, *)`` inputs; the
    parameters and buffers are those of ``nn.BatchNorm*d`` (checkpoints interchange). A batch that
    ``num_splits`` does not divide (e.g. an evaluator's last fine-tuning batch) uses
    ``gcd(N, num_splits)`` sub-batches, or one if a sub-batch would hold a single sample; a method
    that relies on the split checks its training batches itself.
    """

    def __init__(
        self,
        num_features: int,
        num_splits: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        if num_splits < 1:
            raise ValueError("num_splits must be >= 1")
        self.num_splits = int(num_splits)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"SplitBatchNorm expects (N, C, ...) input, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[1]
        s = math.gcd(n, self.num_splits)
        if n // max(s, 1) < 2:
            s = 1
        if not self.training or s == 1:
            return super().forward(x)
        # (N, C, *) -> (N/s, s*C, *): chunk i of the batch becomes channel block i
        rest = x.shape[2:]
        y = x.reshape(s, n // s, c, *rest).transpose(0, 1).reshape(n // s, s * c, *rest)
        # the buffers exist when track_running_stats is set, the affine parameters when affine is
        mean, var, tracked = self.running_mean, self.running_var, self.num_batches_tracked
        rm = mean.repeat(s) if mean is not None and self.track_running_stats else None
        rv = var.repeat(s) if var is not None and self.track_running_stats else None
        w = self.weight.repeat(s) if self.affine else None
        b = self.bias.repeat(s) if self.affine else None
        if tracked is not None and self.track_running_stats:
            tracked.add_(1)
        m = self.momentum if self.momentum is not None else 1.0 / float(cast(torch.Tensor, tracked))
        y = nn.functional.batch_norm(y, rm, rv, w, b, True, m, self.eps)
        if mean is not None and var is not None and rm is not None and rv is not None:
            with torch.no_grad():
                mean.copy_(rm.view(s, c).mean(0))
                var.copy_(rv.view(s, c).mean(0))
        return y.reshape(n // s, s, c, *rest).transpose(0, 1).reshape(x.shape)


def adopt_batchnorm_state(new: nn.Module, old: nn.Module) -> nn.Module:
    """Make batch-norm layer ``new`` share ``old``'s affine parameters and running statistics (the
    same tensor objects) and its train/eval mode; used when one BN class replaces another."""
    if old.affine:
        new.weight, new.bias = old.weight, old.bias
    if old.track_running_stats:
        new.running_mean, new.running_var = old.running_mean, old.running_var
        new.num_batches_tracked = old.num_batches_tracked
    new.train(old.training)
    return new


def split_batchnorm_(module: nn.Module, num_splits: int) -> nn.Module:
    """Replace every ``BatchNorm{1,2,3}d`` under ``module`` by a :class:`SplitBatchNorm` with the
    same parameter and buffer objects (in place; returns ``module``)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, SplitBatchNorm):
            new = SplitBatchNorm(
                child.num_features, num_splits, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            setattr(module, name, adopt_batchnorm_state(new, child))
        else:
            split_batchnorm_(child, num_splits)
    return module


def forward_by_size(backbone: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """``cat([backbone(v) for v in views])`` with consecutive same-size views run as one batch
    (multi-crop: the global crops together, the local crops together, as SwAV's and DINO's
    multi-crop wrappers do; batch norm then sees each resolution group as one batch)."""
    outs, i = [], 0
    while i < len(views):
        j = i + 1
        while j < len(views) and views[j].shape[1:] == views[i].shape[1:]:
            j += 1
        outs.append(backbone(torch.cat(views[i:j]) if j - i > 1 else views[i]))
        i = j
    return torch.cat(outs) if len(outs) > 1 else outs[0]


@torch.no_grad()
def check_accepts_size(backbone: nn.Module, input_shape: Sequence[int], side: int, method: str) -> None:
    """A one-line ConfigError unless ``backbone`` encodes ``side x side`` images (multi-crop's
    local crops): GAP CNNs do, fixed-size ViTs and MLPs on flattened pixels do not. One eval-mode
    forward of two blank images (no statistics change)."""
    from .errors import ConfigError

    was = backbone.training
    p = next(iter(backbone.parameters()), None)
    x = torch.zeros(2, int(input_shape[0]), side, side, device=p.device if p is not None else None)
    try:
        backbone.eval()
        backbone(x)
    except Exception as exc:  # any failure means the same thing here
        raise ConfigError(
            f"{method}: the backbone cannot encode the {side}x{side} local crops of multi-crop "
            f"({type(exc).__name__}); use --opt n_local=0 or a size-agnostic backbone"
        ) from exc
    finally:
        backbone.train(was)


# ---------------------------------------------------------------------------- method zoo heads
class CosineClassifier(nn.Module):
    """Cosine similarities of L2-normalised inputs to ``k`` L2-normalised prototype vectors.

    SwAV's prototypes and DINO's weight-normalised last layer (``norm_last_layer=True``, g = 1)
    are both this layer; the normalisation inside ``forward`` replaces SwAV's in-place
    re-normalisation of the prototype weights before each step.
    """

    def __init__(self, in_dim: int, k: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, in_dim))
        nn.init.normal_(self.weight, std=in_dim**-0.5)
        self.out_dim = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, dim=-1) @ nn.functional.normalize(self.weight, dim=-1).t()


class DINOHead(nn.Module):
    """DINO's projection head: MLP (GELU, no BN) -> bottleneck -> cosine layer to ``out_dim``."""

    def __init__(
        self, in_dim: int, hidden_dim: int = 512, bottleneck_dim: int = 64, out_dim: int = 1024, num_layers: int = 3
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(d, hidden_dim), nn.GELU()]
            d = hidden_dim
        layers.append(nn.Linear(d, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.last = CosineClassifier(bottleneck_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.mlp(x))


# -------------------------------------------------------------------- ViT token-level helpers
def timm_vit(backbone: nn.Module, method: str) -> Any:  # a timm VisionTransformer (timm is optional: duck-typed)
    """The timm VisionTransformer inside a ``timm:vit_*`` backbone, or a one-line ConfigError."""
    from .errors import ConfigError

    vit = getattr(backbone, "model", None)
    if vit is None or not all(hasattr(vit, a) for a in ("patch_embed", "_pos_embed", "blocks", "norm")):
        raise ConfigError(
            f"{method} needs a timm ViT backbone on image data (e.g. --backbone vit-mini, or "
            f"timm:vit_tiny_patch16_224 with backbone_kwargs img_size/patch_size); "
            f"got {type(backbone).__name__}"
        )
    if getattr(vit, "num_prefix_tokens", 0) != 0:
        raise ConfigError(
            f"{method}: use a ViT without class/register tokens (backbone_kwargs class_token: false, global_pool: avg)"
        )
    return vit


def vit_patch_tokens(vit: Any, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Patch embeddings + position embeddings, before the blocks: ``(B, gh * gw, D)`` and the grid."""
    t = vit.patch_embed(x)
    if t.dim() == 4:  # dynamic_img_size: NHWC
        grid = (int(t.shape[1]), int(t.shape[2]))
    else:
        gh, gw = vit.patch_embed.grid_size
        grid = (int(gh), int(gw))
    t = vit._pos_embed(t)
    return vit.norm_pre(t), grid


def vit_encode_tokens(vit: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Run the transformer blocks and the final norm on a (sub)set of tokens."""
    return vit.norm(vit.blocks(tokens))


def gather_tokens(tokens: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``tokens[b, idx[b]]`` for ``tokens (B, N, D)`` and ``idx (B, K)``."""
    return torch.gather(tokens, 1, idx.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def sincos_pos_embed_2d(dim: int, gh: int, gw: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings ``(gh * gw, dim)`` (MAE / I-JEPA); dim % 4 == 0."""
    if dim % 4:
        raise ValueError("sincos_pos_embed_2d needs dim divisible by 4")
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)
    ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij")
    out = []
    for pos in (ys.flatten(), xs.flatten()):
        arg = pos[:, None] * omega[None]
        out += [arg.sin(), arg.cos()]
    return torch.cat(out, 1).float()


class MaskedTokenPredictor(nn.Module):
    """A narrow transformer that predicts tokens at query positions from visible tokens.

    The I-JEPA predictor (context tokens -> target-block representations) and the MAE decoder
    (visible tokens -> pixels of the masked patches) are both this module: visible tokens are
    projected to ``dim``, a learned mask token is placed at every query position, fixed 2-D
    sin-cos position embeddings are added to both, ``depth`` pre-norm blocks run on the union,
    and the query positions are projected to ``out_dim``.
    """

    def __init__(
        self, in_dim: int, dim: int, out_dim: int, depth: int = 2, num_heads: int = 2, mlp_ratio: float = 4.0
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, out_dim)
        self.dim = dim

    def forward(
        self, visible: torch.Tensor, visible_idx: torch.Tensor, query_idx: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        pos = sincos_pos_embed_2d(self.dim, *grid).to(visible.device, visible.dtype)
        pos = pos.unsqueeze(0).expand(visible.shape[0], -1, -1)
        v = self.embed(visible) + gather_tokens(pos, visible_idx)
        q = self.mask_token.to(v.dtype) + gather_tokens(pos, query_idx)
        x = self.norm(self.blocks(torch.cat([v, q], 1)))
        return self.out(x[:, v.shape[1] :])
