"""Numeric precision and memory layout of the forward pass, per device.

``precision`` (a config key) is ``"auto"``, ``"fp32"`` or ``"bf16"``:

* ``bf16`` runs the forward under ``torch.autocast(<device>, dtype=torch.bfloat16)``: matrix
  products and convolutions in bfloat16, reductions and the optimiser state in float32
  (mixed precision). Losses see the autocast dtypes exactly as on a GPU.
* ``auto`` is ``bf16`` on CUDA and on CPUs with native bfloat16 arithmetic (AVX512-BF16 or AMX:
  oneDNN then runs bf16 convolutions about twice as fast as float32), ``fp32`` elsewhere.
  The resolved value is recorded in every checkpoint's metadata (``precision``).

Image batches and convolution weights are channels_last on every device: oneDNN's CPU
convolutions and cuDNN's tensor cores both prefer it (measured: docs/benchmarks.md section 4).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, TypeVar

import torch
from torch import nn

from .config import PRECISIONS
from .errors import ConfigError
from .kinds import DataKind

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bfloat16 instructions (AVX512-BF16 or AMX tiles)."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # an old torch without the probe: be conservative
            pass
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"`` for a config's ``precision`` on ``device``."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {name!r}; known: {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The forward context for a resolved precision (a no-op for fp32)."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def wants_channels_last(kind: str, input_shape: Iterable[int]) -> bool:
    """Images (C, H, W) run channels_last; vectors have no layout to choose."""
    return kind == DataKind.IMAGE and len(tuple(input_shape)) == 3


def to_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def model_to_layout(model: ModuleT, channels_last: bool) -> ModuleT:
    return model.to(memory_format=torch.channels_last) if channels_last else model
