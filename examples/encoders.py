"""An encoder factory for ``ssl-bench eval --encoder encoders:small_cnn`` (put this folder on
``PYTHONPATH``): any importable function that returns an ``nn.Module`` mapping a batch of images
to features (B, D) or feature maps works the same way (docs/evaluate-your-encoder.md)."""

import torch
from torch import nn


def small_cnn() -> nn.Module:
    """A 3-layer CNN for grey 28x28 images (random init, seeded), 128-d features."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
