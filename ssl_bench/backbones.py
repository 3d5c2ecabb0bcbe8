"""Backbones, registered by name (``ssl-bench list backbones``): small and wide CNNs for
28x28-ish images, CIFAR-style ResNets, a small ViT (``vit-mini``, the default of ijepa and mae),
an MLP for low-dimensional data, any timm model.

Every backbone is an ``nn.Module`` with an ``out_dim`` attribute: the size of the representation
that ``encode`` returns and the evaluators judge. A registered builder is called as
``builder(input_shape, **backbone_kwargs)`` (C, H, W for images, D for vectors); the ``timm``
family as ``builder(input_shape, model_name, **backbone_kwargs)``. Third-party packages add
backbones with ``@register_backbone`` or the ``ssl_bench.backbones`` entry-point group.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, cast

import torch
from torch import nn

from .errors import ConfigError, UnknownNameError
from .kinds import DataKind
from .registry import BACKBONES, FAMILY_SUFFIX, register_backbone


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks (32-64-128) with BN, two max-pools, global average pooling.

    About 93k parameters for grey input; works for any image size and channel count.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128), ceil_pool: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=ceil_pool))
            c = w
        self.features = nn.Sequential(*layers)
        self.out_dim = c

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last map before global average pooling, (B, out_dim, h, w)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


class WideCNN(SmallCNN):
    """Four 3x3 conv stages (64-128-256-512) with BN+ReLU, three 2x2 max-pools (ceil), GAP.

    A CPU-sized compromise between ``cnn-small`` and a ResNet: about 1.55M parameters for grey
    input; 28x28 -> 28, 14, 7, 4x4 map before pooling (32x32 -> 4x4); 512-d output.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (64, 128, 256, 512)) -> None:
        super().__init__(in_channels, widths, ceil_pool=True)


class CifarResNet(nn.Module):
    """A ResNet with the CIFAR stem: one 3x3 conv at stride 1 (no 7x7 stride-2 conv, no max-pool),
    then four stages of ``block`` (torchvision's BasicBlock or Bottleneck) at strides 1, 2, 2, 2.

    A 28x28 input keeps a 4x4 map before global average pooling (32x32 -> 4x4); an ImageNet
    stem (timm/torchvision ``resnet18``) shrinks 28x28 to 1x1. Output: GAP, ``512 * expansion``-d.
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: tuple[int, ...],
        in_channels: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != len(widths):
            raise ConfigError(f"CifarResNet: {len(layers)} stage depths for {len(widths)} widths")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        expansion = getattr(block, "expansion", 1)
        stages: list[nn.Module] = []
        c = widths[0]
        for i, (w, n) in enumerate(zip(widths, layers, strict=True)):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or c != w * expansion:
                down = nn.Sequential(
                    nn.Conv2d(c, w * expansion, 1, stride=stride, bias=False), nn.BatchNorm2d(w * expansion)
                )
            blocks = [block(c, w, stride, down)]
            c = w * expansion
            blocks += [block(c, w) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_dim = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each block starts as the identity (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, block):
                    last_bn = cast(nn.BatchNorm2d, m.bn3 if hasattr(m, "bn3") else m.bn2)
                    nn.init.zeros_(last_bn.weight)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))


class MLP(nn.Module):
    """Fully connected trunk for vectors (e.g. mog2d): Linear-BN-ReLU blocks."""

    def __init__(self, in_dim: int, hidden: int = 128, depth: int = 2, out_dim: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            d = hidden
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class TimmBackbone(nn.Module):
    def __init__(self, name: str, in_channels: int, **kwargs: Any) -> None:
        super().__init__()
        import timm

        try:
            model: Any = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels, **kwargs)
        except RuntimeError as exc:  # timm: "Unknown model (...)"
            raise ConfigError(f"timm backbone {name!r}: {exc}") from exc
        except TypeError as exc:
            raise ConfigError(f"timm backbone {name!r} rejected options {kwargs}: {exc}") from exc
        self.model = model
        self.out_dim = int(model.num_features)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# -- registered builders -------------------------------------------------------------------------
def _channels(input_shape: tuple[int, ...], name: str) -> int:
    if len(input_shape) != 3:
        raise ConfigError(f"backbone {name!r} needs image data (C, H, W); use 'mlp' for vector datasets")
    return int(input_shape[0])


@register_backbone("cnn-small", kinds=("image",))
def cnn_small(input_shape: tuple[int, ...], **kwargs: Any) -> nn.Module:
    """3 conv blocks 32-64-128, BN, 2 max-pools, GAP: 128-d, 93k params (the default for images)."""
    return SmallCNN(in_channels=_channels(input_shape, "cnn-small"), **kwargs)


@register_backbone("cnn-wide", kinds=("image",))
def cnn_wide(input_shape: tuple[int, ...], **kwargs: Any) -> nn.Module:
    """4 conv stages 64-128-256-512, BN, 3 max-pools (28px -> 4x4), GAP: 512-d, 1.55M params."""
    return WideCNN(in_channels=_channels(input_shape, "cnn-wide"), **kwargs)


@register_backbone("resnet18-cifar", kinds=("image",))
def resnet18_cifar(input_shape: tuple[int, ...], **kwargs: Any) -> nn.Module:
    """ResNet-18, CIFAR stem (3x3 conv stride 1, no max-pool), BasicBlock: 512-d, 11.2M params."""
    from torchvision.models.resnet import BasicBlock

    return CifarResNet(BasicBlock, (2, 2, 2, 2), in_channels=_channels(input_shape, "resnet18-cifar"), **kwargs)


@register_backbone("resnet50-cifar", kinds=("image",))
def resnet50_cifar(input_shape: tuple[int, ...], **kwargs: Any) -> nn.Module:
    """ResNet-50, CIFAR stem (3x3 conv stride 1, no max-pool), Bottleneck: 2048-d, 23.5M params."""
    from torchvision.models.resnet import Bottleneck

    return CifarResNet(Bottleneck, (3, 4, 6, 3), in_channels=_channels(input_shape, "resnet50-cifar"), **kwargs)


@register_backbone("mlp")
def mlp(input_shape: tuple[int, ...], **kwargs: Any) -> nn.Module:
    """Linear-BN-ReLU x2 on the flattened input, 32-d (the default for vector data)."""
    dim = 1
    for s in input_shape:
        dim *= int(s)
    return MLP(dim, **kwargs)


@register_backbone("timm" + FAMILY_SUFFIX, kinds=("image",))
def timm_model(input_shape: tuple[int, ...], model_name: str, **kwargs: Any) -> nn.Module:
    """Any timm model by name, e.g. timm:resnet18 (input channels adapted, no classifier)."""
    if kwargs.get("img_size") == "auto":
        kwargs["img_size"] = tuple(input_shape[1:])
    if kwargs.get("patch_size") == "auto":
        kwargs["patch_size"] = auto_patch_size(tuple(input_shape[1:]))
    return TimmBackbone(model_name, in_channels=_channels(input_shape, "timm:" + model_name), **kwargs)


#: ``vit-mini``: timm's VisionTransformer class and initialisation (the ``vit_tiny_patch16_224``
#: entry point), with every size overridden for CPUs. Patch and image size follow the data
#: (``"auto"``, :func:`auto_patch_size`): 7 x 7 patches (16 tokens) on 28 x 28. Finer 4 x 4 patches
#: cost about twice the time for a lower k-NN at the CPU budgets (measured: docs/benchmarks.md
#: section 10). ``backbone_kwargs`` override any of these (``{"patch_size": 4}``).
VIT_MINI_MODEL = "vit_tiny_patch16_224"
VIT_MINI_KWARGS: dict[str, Any] = {
    "img_size": "auto",
    "patch_size": "auto",
    "embed_dim": 96,
    "depth": 4,
    "num_heads": 3,
    "class_token": False,
    "global_pool": "avg",
    "dynamic_img_size": True,
}


@register_backbone("vit-mini", kinds=("image",))
def vit_mini(input_shape: tuple[int, ...], **kwargs: Any) -> nn.Module:
    """ViT (timm) width 96, depth 4, 3 heads, avg pool, ~16 tokens (7-px patches on 28 px): 96-d, 0.45M params.

    No class token; the default backbone of ijepa and mae (:data:`VIT_MINI_KWARGS`)."""
    _channels(input_shape, "vit-mini")
    return timm_model(input_shape, VIT_MINI_MODEL, **{**VIT_MINI_KWARGS, **kwargs})


#: Backbone names of rows written before the backbone had a name of its own: {stored name: (its
#: name now, the methods whose rows say so)}. ijepa and mae (and the random-init reference rows of
#: their sweeps) trained ``timm:vit_tiny_patch16_224`` with vit-mini's options until ``vit-mini``
#: was registered; their rows name the timm entry point, with the config's backbone ``"auto"``.
LEGACY_NAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "timm:" + VIT_MINI_MODEL: ("vit-mini", ("ijepa", "mae", "random-init")),
}


def real_backbone_name(method: str, backbone: str, config: dict | None) -> str:
    """The registered name of the backbone a result row was built with: ``backbone`` itself, or
    its name now when the row predates it (:data:`LEGACY_NAMES`: a row of one of the listed
    methods whose config left the backbone to the method, ``"auto"``)."""
    legacy = LEGACY_NAMES.get(str(backbone))
    if legacy is None or method not in legacy[1]:
        return str(backbone)
    return legacy[0] if (config or {}).get("backbone", "auto") in ("auto", "", None) else str(backbone)


def backbone_label(name: str, kwargs: dict | None = None, image_hw: tuple[int, int] | None = None) -> str:
    """How tables show a backbone: its name, and for a ViT its width, depth, patch size and token
    count on images of ``image_hw`` (H, W), e.g. ``vit-mini (w96 d4, 7-px patches, 16 tokens)``.
    The name alone for other backbones, and when the ViT cannot be built (the size is then unknown)."""
    if name != "vit-mini" and not str(name).startswith("timm:"):
        return str(name)
    try:
        key = json.dumps(kwargs or {}, sort_keys=True)
    except TypeError:
        return str(name)
    geo = _vit_geometry(str(name), key, tuple(image_hw) if image_hw else None)
    if geo is None:
        return str(name)
    width, depth, patch, tokens = geo
    parts = [f"w{width} d{depth}", f"{patch}-px patches" if patch else "patches from the image size"]
    if tokens:
        parts.append(f"{tokens} tokens")
    return f"{name} ({', '.join(parts)})"


def label_name(label: str) -> str:
    """The backbone name of a :func:`backbone_label`."""
    return str(label).split(" (", 1)[0]


@lru_cache(maxsize=256)
def _vit_geometry(
    name: str, kwargs_json: str, image_hw: tuple[int, ...] | None
) -> tuple[int, int, int | str | None, int | None] | None:
    """(width, depth, patch size, tokens) of the backbone ``name`` if it is a ViT, from a copy built
    on the meta device (no memory, no initialisation cost); None for other backbones. Without an
    image size, a patch size that follows the data ("auto") and the token count are None."""
    kwargs = json.loads(kwargs_json)
    hw = tuple(int(v) for v in image_hw) if image_hw else None
    auto = {k for k in ("img_size", "patch_size") if {**_defaults_of(name), **kwargs}.get(k) == "auto"}
    shape = (1, *(hw or (224, 224)))
    try:
        with torch.device("meta"):
            net = build_backbone(name, shape, DataKind.IMAGE, **kwargs)
    except Exception:  # not a timm model, options it rejects, a size it cannot take: no geometry
        return None
    vit: Any = getattr(net, "model", None)
    pe: Any = getattr(vit, "patch_embed", None)
    ps: Any = getattr(pe, "patch_size", None)
    if pe is None or ps is None or not hasattr(vit, "blocks") or not hasattr(vit, "embed_dim"):
        return None
    ph, pw = (int(ps[0]), int(ps[-1])) if isinstance(ps, (tuple, list)) else (int(ps), int(ps))
    width, depth = int(vit.embed_dim), len(vit.blocks)
    if hw is None and "patch_size" in auto:
        return width, depth, None, None
    patch: int | str = ph if ph == pw else f"{ph}x{pw}"
    if hw is None:
        grid = getattr(pe, "grid_size", None)
        tokens = int(grid[0]) * int(grid[1]) if grid is not None and "img_size" not in auto else None
    else:
        tokens = (hw[0] // ph) * (hw[1] // pw)
    return width, depth, patch, tokens


def _defaults_of(name: str) -> dict[str, Any]:
    return VIT_MINI_KWARGS if name == "vit-mini" else {}


def default_backbone(kind: str) -> str:
    return "cnn-small" if kind == DataKind.IMAGE else "mlp"


def auto_patch_size(hw: tuple[int, ...], tokens: int = 16) -> int:
    """The ViT patch size for ``img_size``/``patch_size = "auto"``: the common divisor p >= 2 of
    H and W whose (H/p)(W/p) patch grid is closest to ``tokens`` (28 -> 7, 32 -> 8, 96 -> 24), so
    a CPU-sized ViT sees ~16 tokens whatever the image size (compute grows with tokens)."""
    h, w = int(hw[0]), int(hw[-1])
    cands = [p for p in range(2, min(h, w) + 1) if h % p == 0 and w % p == 0]
    if not cands:
        raise ConfigError(f"patch_size 'auto': {h}x{w} images have no common patch size >= 2; set patch_size")
    return min(cands, key=lambda p: (abs((h // p) * (w // p) - tokens), p))


def check_backbone_name(name: str) -> None:
    """Raise a one-line :class:`ConfigError` unless ``name`` is "auto" or a registered backbone."""
    if name in ("auto", "", None):
        return
    try:
        BACKBONES.lookup(name)
    except UnknownNameError as exc:
        raise ConfigError(str(exc)) from None


def build_backbone(name: str, input_shape: tuple[int, ...], kind: str, **kwargs: Any) -> nn.Module:
    """Build a registered backbone by name for data of ``input_shape`` (C,H,W for images, D for vectors)."""
    if name in ("auto", "", None):
        name = default_backbone(kind)
    check_backbone_name(name)
    builder, model_name = BACKBONES.lookup(name)
    kinds = getattr(builder, "data_kinds", None)
    if kinds is not None and kind not in kinds:
        alt = default_backbone(kind)
        raise ConfigError(
            f"backbone {name!r} needs {' or '.join(kinds)} data, not {kind}; use {alt!r} for {kind} datasets"
        )
    args = (tuple(input_shape),) if model_name is None else (tuple(input_shape), model_name)
    try:
        net = builder(*args, **kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        raise ConfigError(f"backbone {name!r} rejected backbone_kwargs {kwargs}: {exc}") from exc
    if not isinstance(net, nn.Module) or not isinstance(getattr(net, "out_dim", None), int):
        raise ConfigError(
            f"backbone {name!r} ({getattr(builder, '__module__', '?')}) must return an nn.Module with "
            f"an integer out_dim, got {type(net).__name__}"
        )
    return net
