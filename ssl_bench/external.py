"""Encoders trained anywhere: ``timm:<arch>``, ``torchvision:<arch>``, ``hf:<folder>`` and
``<module>:<callable>``, resolved by name through :data:`SOURCES` (a registry like the methods'),
their weights read safely, their inputs adapted, wrapped as a :class:`~ssl_bench.method.Method`
so that every evaluator (the model evaluators LiDAR and reconstruction included) judges them.

* :func:`resolve` builds the network of a SPEC (no download: ``pretrained=False`` /
  ``weights=None`` / ``local_files_only=True``) and says what input it wants (channels, size,
  normalisation) from the encoder's own config, else ImageNet's.
* :func:`read_weights` reads ``.safetensors`` (safetensors) or ``.pth``/``.pt``/``.ckpt``
  (``torch.load(weights_only=True)``: a pickle that needs more than tensors is refused in one
  line, before any of it runs); a Lightning checkpoint's ``state_dict`` is found by itself, other
  nested dictionaries are flattened with dotted keys (``teacher.backbone.conv1.weight``).
* :func:`load_strict` keeps the keys under ``--strip-prefix`` and loads strictly; a mismatch is
  one line that names the prefixes found in the file and the first missing and unexpected keys.
* :class:`AdaptedEncoder` maps a batch of floats in [0, 1] at the data's own shape to the
  encoder's input (grey repeated to 3 channels, resized, normalised) and returns its features
  (an HF model's pooled output; ``layer``: an intermediate module's output, averaged over spatial
  positions or tokens).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError, ConfigError
from .registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Suffixes ``--weights`` accepts.
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


@dataclasses.dataclass
class Built:
    """A resolved SPEC: the network and the input it wants."""

    net: nn.Module
    spec: str
    in_chans: int | None = None  # None: whatever the data has
    input_size: int | None = None  # None: the data's own size
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    norm_from: str = "imagenet"  # where mean/std came from
    size_from: str = "data"  # where input_size came from
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor] = lambda net, x: net(x)
    head_prefixes: tuple[str, ...] = ()  # classifier keys in a weights file that are ignored
    weights_hint: str = ""  # label of the weights when no --weights is given


#: Encoder sources by name: ``SOURCES.get("timm")("resnet18")`` -> :class:`Built`. A third-party
#: package adds one through the entry-point group ``ssl_bench.encoder_sources``.
SOURCES: Registry[Callable[[str], Built]] = Registry("encoder source", None, "ssl_bench.encoder_sources")


def first_conv_channels(net: nn.Module) -> int | None:
    """Input channels of the first 2-D convolution (None when there is none)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return None


@SOURCES.register("timm")
def timm_source(arch: str) -> Built:
    import timm

    if arch not in timm.list_models():
        raise ConfigError(f"timm has no model {arch!r} (timm.list_models() lists them)")
    net = timm.create_model(arch, pretrained=False, num_classes=0)
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    shape = cfg.get("input_size") or (first_conv_channels(net) or 3, 224, 224)
    head = cfg.get("classifier")
    heads = tuple(f"{h}." for h in ([head] if isinstance(head, str) else head or []))
    return Built(
        net,
        f"timm:{arch}",
        in_chans=int(shape[0]),
        input_size=int(shape[-1]),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        norm_from="timm pretrained_cfg" if "mean" in cfg else "imagenet",
        size_from="timm pretrained_cfg" if "input_size" in cfg else "default 224",
        head_prefixes=heads,
        weights_hint="random-init",
    )


#: Attribute names of a torchvision model's classifier, in the order they are looked for.
TV_HEADS = ("fc", "heads", "classifier", "head")


@SOURCES.register("torchvision")
def torchvision_source(arch: str) -> Built:
    import torchvision

    if arch not in torchvision.models.list_models():
        raise ConfigError(f"torchvision has no model {arch!r} (torchvision.models.list_models() lists them)")
    net = torchvision.models.get_model(arch, weights=None)
    head = next((h for h in TV_HEADS if isinstance(getattr(net, h, None), nn.Module)), None)
    if head is None:
        raise ConfigError(f"torchvision:{arch}: no classifier found (looked for {', '.join(TV_HEADS)})")
    setattr(net, head, nn.Identity())
    size = int(getattr(net, "image_size", 224))
    return Built(
        net,
        f"torchvision:{arch}",
        in_chans=3,
        input_size=size,
        size_from="torchvision default",
        head_prefixes=(f"{head}.",),
        weights_hint="random-init",
    )


def hf_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An HF vision model's pooled output, else the mean of its last hidden states."""
    out = net(pixel_values=x)
    pooled = getattr(out, "pooler_output", None)
    if pooled is not None:
        return pooled
    h = out.last_hidden_state
    return h.mean(1) if h.dim() == 3 else h.mean((2, 3))


@SOURCES.register("hf")
def hf_source(folder: str) -> Built:
    from transformers import AutoConfig, AutoModel

    p = Path(folder)
    if not (p / "config.json").is_file():
        raise ConfigError(f"hf:{folder}: not a folder saved with save_pretrained (no config.json in it)")
    try:
        cfg = AutoConfig.from_pretrained(str(p), local_files_only=True, trust_remote_code=False)
        net = AutoModel.from_pretrained(str(p), local_files_only=True, trust_remote_code=False, config=cfg)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"hf:{folder}: cannot load it offline ({' '.join(str(exc).split())[:300]})") from None
    mean, std, norm_from = IMAGENET_MEAN, IMAGENET_STD, "imagenet"
    proc = p / "preprocessor_config.json"
    if proc.is_file():
        import json

        d = json.loads(proc.read_text())
        if d.get("image_mean") and d.get("image_std"):
            mean, std, norm_from = tuple(d["image_mean"]), tuple(d["image_std"]), "preprocessor_config.json"
    size = getattr(cfg, "image_size", None)
    size = size[-1] if isinstance(size, (list, tuple)) else size
    return Built(
        net,
        f"hf:{p.name}",
        in_chans=int(getattr(cfg, "num_channels", 3)),
        input_size=int(size) if size else None,
        mean=mean,
        std=std,
        norm_from=norm_from,
        size_from="hf config" if size else "data",
        features=hf_features,
        weights_hint=p.name,
    )


def factory_source(spec: str) -> Built:
    """``<module>:<callable>``: import the module (as Python does: it runs its code, the plugin
    way) and call the factory with no arguments; it must return an ``nn.Module``."""
    mod_name, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(f"encoder {spec!r}: cannot import {mod_name!r} ({exc})") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise ConfigError(f"encoder {spec!r}: {mod_name} has no callable {attr!r}")
    net = fn()
    if not isinstance(net, nn.Module):
        raise ConfigError(f"encoder {spec!r}: the factory returned {type(net).__name__}, not a torch.nn.Module")
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    return Built(
        net,
        spec,
        in_chans=first_conv_channels(net),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        norm_from="pretrained_cfg" if "mean" in cfg else "imagenet",
        weights_hint="as-built",
    )


def resolve(spec: str) -> Built:
    """The :class:`Built` of a SPEC: ``<source>:<rest>`` for a registered source, else
    ``<module>:<callable>``. Deterministic: seed torch first for a reproducible random init."""
    head, sep, rest = spec.partition(":")
    if not sep or not head or not rest:
        raise ConfigError(
            f"encoder {spec!r}: use timm:ARCH, torchvision:ARCH, hf:FOLDER or MODULE:CALLABLE "
            f"(sources: {', '.join(SOURCES.names())})"
        )
    if head.lower() in SOURCES:
        return SOURCES.get(head.lower())(rest)
    return factory_source(spec)


# -- weights ---------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _flatten(d: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in d.items():
        if isinstance(v, torch.Tensor):
            out[f"{prefix}{k}"] = v
        elif isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
    return out


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, with dotted names. Safe: safetensors, or
    ``torch.load(weights_only=True)``, which refuses a pickle that needs other Python objects
    before any of them is built (nothing in the file runs)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--weights {p}: no such file")
    if p.suffix not in WEIGHT_SUFFIXES:
        raise ConfigError(f"--weights {p}: expected one of {', '.join(WEIGHT_SUFFIXES)}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as exc:
            raise CheckpointError(f"--weights {p}: not a readable safetensors file ({type(exc).__name__})") from None
    import pickle

    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"--weights {p}: refused, its pickle needs Python objects beyond tensors ({unsafe_globals(p)}), so "
            f"nothing of it was run; save model.state_dict() with torch.save or as .safetensors"
        ) from None
    except Exception as exc:
        raise CheckpointError(f"--weights {p}: not a readable torch file ({type(exc).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # Lightning
        obj = obj["state_dict"]
    state = _flatten(obj) if isinstance(obj, dict) else {}
    if not state:
        raise CheckpointError(f"--weights {p}: holds no tensors (a {type(obj).__name__})")
    return state


def unsafe_globals(p: Path) -> str:
    """The globals a pickle would import, read from its opcodes (nothing is imported or run)."""
    try:
        from torch.serialization import get_unsafe_globals_in_checkpoint

        names = get_unsafe_globals_in_checkpoint(str(p))
    except Exception:  # an old torch, an unreadable archive: the refusal stands without the names
        return "objects torch.load(weights_only=True) does not allow"
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def key_prefixes(keys: list[str], limit: int = 8) -> list[str]:
    """The dotted prefixes of ``keys`` one and two levels deep, with their counts, most keys first."""
    counts: dict[str, int] = {}
    for k in keys:
        parts = k.split(".")
        for depth in (1, 2):
            if len(parts) > depth:
                pre = ".".join(parts[:depth]) + "."
                counts[pre] = counts.get(pre, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return [f"{p} ({n} keys)" for p, n in sorted(top)]


def strip_prefix(state: dict[str, torch.Tensor], prefix: str, where: str) -> dict[str, torch.Tensor]:
    """The keys under ``prefix``, with ``prefix`` removed; none: a one-line error naming those found."""
    if not prefix:
        return state
    kept = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not kept:
        found = ", ".join(key_prefixes(list(state))) or "none"
        raise CheckpointError(f"{where}: no key starts with --strip-prefix {prefix!r}; prefixes in the file: {found}")
    return kept


def load_strict(net: nn.Module, state: dict[str, torch.Tensor], where: str, ignore: tuple[str, ...] = ()) -> int:
    """Load ``state`` into ``net`` strictly, after dropping the keys under ``ignore`` (a classifier
    the encoder does not have); returns how many were dropped. A mismatch is one CheckpointError."""
    dropped = [k for k in state if k.startswith(ignore)] if ignore else []
    state = {k: v for k, v in state.items() if k not in dropped}
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        found = ", ".join(key_prefixes(list(state))) or "none (flat names)"
        first_missing, first_unexpected = ", ".join(missing[:3]) or "-", ", ".join(unexpected[:3]) or "-"
        raise CheckpointError(
            f"{where}: keys do not match the encoder: {len(missing)} missing (first: {first_missing}), "
            f"{len(unexpected)} unexpected (first: {first_unexpected}); "
            f"prefixes in the file: {found}; pass --strip-prefix PREFIX to keep the keys under PREFIX"
        )
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{where}: {len(bad)} tensor(s) of the wrong shape, e.g. {k}: {tuple(state[k].shape)} in the file, "
            f"{tuple(own[k].shape)} in the encoder"
        )
    net.load_state_dict(state, strict=True)
    return len(dropped)


# -- input adaptation ------------------------------------------------------------------------
class AdaptedEncoder(nn.Module):
    """Floats in [0, 1] at the data's shape -> the encoder's input -> features (B, D).

    ``adapt`` repeats a grey channel to ``in_chans``, resizes to ``input_size`` (bilinear,
    antialiased when shrinking) and normalises with ``mean``/``std``. ``layer``: the output of
    that sub-module of ``net`` instead of the features, averaged over spatial positions (4-D) or
    tokens (3-D)."""

    def __init__(self, built: Built, in_chans: int | None, input_size: int | None, layer: str = "") -> None:
        super().__init__()
        self.net = built.net
        self.features = built.features
        self.in_chans, self.input_size, self.layer = in_chans, input_size, layer
        c = len(built.mean)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(built.mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(built.std, dtype=torch.float32).view(1, c, 1, 1))
        self.layer_module = None
        if layer:
            try:
                self.layer_module = self.net.get_submodule(layer)
            except AttributeError:
                names = [n for n, _ in self.net.named_modules() if n][:12]
                raise ConfigError(f"--layer {layer!r}: no such sub-module (e.g. {', '.join(names)})") from None
        self.out_dim = 0

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return x
        if self.in_chans and x.shape[1] != self.in_chans:
            if x.shape[1] != 1:
                raise ConfigError(f"the encoder wants {self.in_chans} channels, the data has {x.shape[1]}")
            x = x.expand(-1, self.in_chans, -1, -1)
        size = self.input_size
        if size and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
        if self.mean.shape[1] == x.shape[1]:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return x.contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.adapt(x)
        if self.layer_module is None:
            return self.features(self.net, x).flatten(1)
        out: dict[str, torch.Tensor] = {}

        def keep(_m: nn.Module, _i: Any, o: Any) -> None:
            o = o[0] if isinstance(o, (tuple, list)) else getattr(o, "last_hidden_state", o)
            out["z"] = o.clone()

        handle = self.layer_module.register_forward_hook(keep)
        try:
            self.features(self.net, x)
        finally:
            handle.remove()
        z = out["z"]
        return (z.mean((2, 3)) if z.dim() == 4 else z.mean(1) if z.dim() == 3 else z).flatten(1)
