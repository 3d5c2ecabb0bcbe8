"""Backbones: a small CNN for 28x28-ish images, an MLP for low-dimensional data, any timm model.

Every backbone is an ``nn.Module`` with an ``out_dim`` attribute: the size of the representation
that ``encode`` returns and the evaluators judge.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import ConfigError


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks (32-64-128) with BN, two max-pools, global average pooling.

    About 93k parameters for grey input; works for any image size and channel count.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


class MLP(nn.Module):
    """Fully connected trunk for vectors (e.g. mog2d): Linear-BN-ReLU blocks."""

    def __init__(self, in_dim: int, hidden: int = 128, depth: int = 2, out_dim: int = 32):
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
    def __init__(self, name: str, in_channels: int, **kwargs):
        super().__init__()
        import timm

        try:
            self.model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels, **kwargs)
        except RuntimeError as exc:  # timm: "Unknown model (...)"
            raise ConfigError(f"timm backbone {name!r}: {exc}") from exc
        except TypeError as exc:
            raise ConfigError(f"timm backbone {name!r} rejected options {kwargs}: {exc}") from exc
        self.out_dim = int(self.model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


BUILTIN_BACKBONES = ("cnn-small", "mlp", "timm:<model name>")


def default_backbone(kind: str) -> str:
    return "cnn-small" if kind == "image" else "mlp"


def auto_patch_size(hw: tuple[int, ...], tokens: int = 16) -> int:
    """The ViT patch size for ``img_size``/``patch_size = "auto"``: the common divisor p >= 2 of
    H and W whose (H/p)(W/p) patch grid is closest to ``tokens`` (28 -> 7, 32 -> 8, 96 -> 24), so
    a CPU-sized ViT sees ~16 tokens whatever the image size (compute grows with tokens)."""
    h, w = int(hw[0]), int(hw[-1])
    cands = [p for p in range(2, min(h, w) + 1) if h % p == 0 and w % p == 0]
    if not cands:
        raise ConfigError(f"patch_size 'auto': {h}x{w} images have no common patch size >= 2; set patch_size")
    return min(cands, key=lambda p: (abs((h // p) * (w // p) - tokens), p))


def build_backbone(name: str, input_shape: tuple[int, ...], kind: str, **kwargs) -> nn.Module:
    """Build a backbone by name for data of ``input_shape`` (C,H,W for images, D for vectors)."""
    if name in ("auto", "", None):
        name = default_backbone(kind)
    if name == "cnn-small":
        if kind != "image":
            raise ConfigError("backbone 'cnn-small' needs image data; use 'mlp' for vector datasets")
        return SmallCNN(in_channels=input_shape[0], **kwargs)
    if name == "mlp":
        dim = 1
        for s in input_shape:
            dim *= s
        return MLP(dim, **kwargs)
    if name.startswith("timm:"):
        if kind != "image":
            raise ConfigError("timm backbones need image data")
        if kwargs.get("img_size") == "auto":
            kwargs["img_size"] = tuple(input_shape[1:])
        if kwargs.get("patch_size") == "auto":
            kwargs["patch_size"] = auto_patch_size(tuple(input_shape[1:]))
        return TimmBackbone(name[len("timm:"):], in_channels=input_shape[0], **kwargs)
    raise ConfigError(f"unknown backbone {name!r}; known backbones: {', '.join(BUILTIN_BACKBONES)}")
