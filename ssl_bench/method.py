"""The method contract.

A method plugin is a subclass of :class:`Method` registered by name::

    @register_method("vicreg")
    class VICReg(Method):
        defaults = dict(proj_dim=256, inv_weight=25.0, ...)   # every switch the method has
        def __init__(self, backbone, hp, spec):
            super().__init__(backbone, hp, spec)
            self.projector = MLPHead(backbone.out_dim, ...)
        def training_step(self, views):
            z1, z2 = (self.projector(self.backbone(v)) for v in views)
            loss = losses.vicreg(z1, z2, ...)
            return loss, {"inv": ...}

What a method declares:

* ``defaults``: its hyper-parameters; config ``method_kwargs`` override them (unknown keys fail);
* its heads and target networks as sub-modules (targets built with ``heads.frozen_copy``);
* ``make_views(spec, overrides)``: the view generator (default: ``n_views`` views of the data
  kind's default recipe);
* ``training_step(views) -> (loss, logs)``;
* ``on_step_end(progress)``: per-step updates outside the gradient (EMA targets, queues);
* recipe pieces the harness applies to every method alike, each off by default:
  ``frozen_parameters()`` (parameter-name prefixes that get no update this step, e.g. DINO's
  last layer in epoch 1), ``grad_clip()`` (per-tensor gradient-norm clipping, DINO's 3.0) and
  ``weight_decay_end()`` (weight decay follows a cosine from its configured value to this one).
  ``self.clock`` says where training is (step, steps per epoch, total steps, seed); the harness
  sets it before each step, so these may depend on it. Randomness inside ``training_step``
  (masks, noise levels) draws from ``self.clock.generator()``, the step's own seeded stream, like
  the views do from theirs: never from the global RNG, so a step is the same after a resume, on
  any number of ranks, and whatever ran before it;
* ``data_kinds``: the data kinds it can train on (default both; ``("image",)`` for ViT-token methods);
* ``encode(x)``: the representation the evaluators judge. It must depend on ``self.backbone``
  only: checkpoints store the backbone weights, those of ``evaluated_backbone()`` (the EMA
  teacher / target for methods whose paper evaluates it, ``evaluated``), loaded into
  ``backbone`` when a checkpoint is rebuilt.

The harness owns everything else (optimiser, schedule, devices, checkpoints); evaluation lives
outside methods, on frozen checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import torch
from torch import nn

from .errors import ConfigError
from .views import MultiView, default_augment, view_generator


@dataclass(frozen=True)
class TrainClock:
    """Where training is when a step starts: ``step`` optimiser steps done so far, out of
    ``total_steps``, ``steps_per_epoch`` per epoch (0 outside the harness: not known)."""

    step: int = 0
    steps_per_epoch: int = 0
    total_steps: int = 0
    seed: int = 0

    @property
    def epoch(self) -> float:
        """Epochs completed so far (fractional); 0 when the epoch length is not known."""
        return self.step / self.steps_per_epoch if self.steps_per_epoch else 0.0

    def generator(self) -> torch.Generator:
        """A CPU generator whose state depends only on (seed, step): the method's random stream for
        this step (masks, noise), separate from the views' stream. A new one on each call, so a
        step that needs several draws takes one generator and draws from it in order."""
        return view_generator(self.seed, self.step, "cpu", stream=1)


@dataclass(frozen=True)
class DataSpec:
    """What a method may know about the data: never the labels."""

    kind: str  # a DataKind ("image" | "vector"; a StrEnum, so plain strings from old files compare equal)
    input_shape: tuple[int, ...]
    num_train: int = 0
    #: the dataset's declared view recipe (``Data.views``), as sorted items: what
    #: :func:`ssl_bench.views.default_augment` resolves the method's and the config's views over
    views: tuple[tuple[str, Any], ...] = ()


class Method(nn.Module):
    defaults: ClassVar[dict[str, Any]] = {}
    #: Learning rate and weight decay this method prefers (keys ``lr``, ``weight_decay``); the config
    #: wins. The optimiser itself is the config's (``optimizer``), the same for every method, unless
    #: the config asks for each method's own (``optimizer: paper``, below).
    optim_defaults: ClassVar[dict[str, Any]] = {}
    #: The paper's optimiser, used when the config says ``optimizer: paper``: ``optimizer`` (adamw,
    #: sgd or lars), ``lr``, ``weight_decay``, and ``lr_batch`` where the paper scales the lr linearly
    #: with the batch (lr x batch / lr_batch); empty where the paper names none
    #: (:func:`ssl_bench.optim.optim_choice`).
    paper_optim: ClassVar[dict[str, Any]] = {}
    n_views: ClassVar[int] = 2
    registry_name: ClassVar[str] = "?"
    #: Backbone used when the config says ``backbone: auto``, per data kind, e.g.
    #: ``{"image": ("vit-mini", {"patch_size": 4})}``.
    #: None = the data kind's default (cnn-small for images, mlp for vectors).
    default_backbone: ClassVar[dict[str, tuple[str, dict]] | None] = None
    #: Under DDP (torchrun), batch norm layers use global-batch statistics; False keeps them per rank.
    sync_batchnorm: bool = True  # a class default; a method may set it per instance from its options
    #: Under DDP, set True when some trainable parameters get no gradient in ``training_step``.
    ddp_find_unused_parameters: ClassVar[bool] = False
    #: The data kinds (``DataSpec.kind``) the method can train on. A method that needs images (a
    #: ViT's patch tokens, e.g. I-JEPA, MAE) says ``("image",)``: ``--methods all`` then skips it on
    #: vector datasets, and naming it there is a one-line error.
    data_kinds: ClassVar[tuple[str, ...]] = ("image", "vector")
    #: Which network the paper evaluates and the checkpoints store: ``"online"`` (``backbone``),
    #: or ``"teacher"`` / ``"target"`` (``target_backbone``, e.g. DINO, I-JEPA).
    evaluated: ClassVar[str] = "online"
    #: Options added after result rows were recorded, each with the value that does exactly what the
    #: method did before the option existed (ijepa: ``{"loss": "mse"}``). While an option holds that
    #: value it is left out of the recorded recipe (:meth:`recipe_options`), so rows and resume
    #: states trained before it existed keep their recipe digest and are not reported stale; any
    #: other value is recorded as usual.
    recipe_neutral: ClassVar[dict[str, Any]] = {}
    #: Optimiser steps of the whole run, set by the trainer before the first step (EMA schedules
    #: scale to it, :mod:`ssl_bench.ema`); None outside the trainer.
    total_steps: int | None = None

    def __init__(self, backbone: nn.Module, hp: dict[str, Any] | None = None, spec: DataSpec | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.hp = SimpleNamespace(**self.resolve_hparams(hp or {}))
        self.clock = TrainClock()

    @classmethod
    def resolve_hparams(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(cls.defaults))
        if unknown:
            known = ", ".join(sorted(cls.defaults)) or "(none)"
            raise ConfigError(f"method {cls.registry_name!r} has no option(s) {unknown}; known: {known}")
        merged = dict(cls.defaults)
        for k, v in overrides.items():
            d = cls.defaults[k]
            if isinstance(d, bool) and not isinstance(v, bool):
                raise ConfigError(f"method option {k!r} must be true/false, got {v!r}")
            if isinstance(d, (int, float)) and not isinstance(d, bool):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ConfigError(f"method option {k!r} must be a number, got {v!r}")
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"method option {k!r} must be a finite number, got {v!r}")
                if isinstance(d, int) and not float(v).is_integer():
                    raise ConfigError(f"method option {k!r} must be an integer, got {v!r}")
                if "temp" in k and d > 0 and not v > 0:
                    raise ConfigError(f"method option {k!r} is a temperature and must be > 0, got {v!r}")
                is_size = isinstance(d, int) and d >= 1 and (k.endswith("dim") or k.startswith("num_"))
                if is_size and not 1 <= v <= 1 << 20:
                    raise ConfigError(f"method option {k!r} is a size and must be in [1, {1 << 20}], got {v!r}")
                if isinstance(d, int) and k.startswith("n_") and not 0 <= v <= 1 << 20:  # n_local=0: none
                    raise ConfigError(f"method option {k!r} is a count and must be in [0, {1 << 20}], got {v!r}")
                v = type(d)(v)
            elif isinstance(d, str) and not isinstance(v, str):
                raise ConfigError(f"method option {k!r} must be a string, got {v!r}")
            merged[k] = v
        return merged

    @classmethod
    def recipe_options(cls, hp: dict[str, Any]) -> dict[str, Any]:
        """The resolved options ``hp`` as the recipe records them: those at their
        ``recipe_neutral`` value left out."""
        neutral = cls.recipe_neutral
        return {k: v for k, v in hp.items() if not (k in neutral and v == neutral[k])}

    @classmethod
    def supports(cls, kind: str) -> bool:
        """Whether the method can train on data of this kind (``"image"`` / ``"vector"``)."""
        return kind in cls.data_kinds

    # -- the contract -------------------------------------------------------------------------
    def make_views(self, spec: DataSpec, overrides: dict | None = None) -> Callable:
        return MultiView(default_augment(spec.kind, overrides, spec.views), n=self.n_views)

    def training_step(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def on_step_end(self, progress: float) -> None:  # optional hook: does nothing by default
        """Called after each optimiser step with progress in [0, 1] (EMA updates etc.)."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def evaluated_backbone(self) -> nn.Module:
        """The backbone whose weights the encoder checkpoint stores (same keys as ``backbone``):
        the online one, or the EMA target for methods with ``evaluated != "online"``."""
        return cast(nn.Module, self.backbone if self.evaluated == "online" else self.target_backbone)

    @contextmanager
    def evaluated_as_backbone(self) -> Iterator[None]:
        """Within the block ``backbone`` is ``evaluated_backbone()``, so ``encode`` embeds with the
        network that the checkpoint stores and the evaluators score (DINO's teacher, I-JEPA's
        target); the online backbone is put back on exit. For a method being trained (the k-NN
        monitor): a method rebuilt from a checkpoint already holds those weights in ``backbone``."""
        if self.evaluated == "online":
            yield
            return
        online = self.backbone
        self.backbone = self.evaluated_backbone()
        try:
            yield
        finally:
            self.backbone = online

    # -- recipe pieces the harness applies (all off by default) ----------------------------------
    def frozen_parameters(self) -> tuple[str, ...]:
        """Sub-module / parameter name prefixes whose gradients are dropped before this step's
        optimiser update (no update at all, weight decay included), e.g. ``("head.last",)``."""
        return ()

    def grad_clip(self) -> float:
        """> 0: after backward, each parameter tensor's gradient is rescaled to L2 norm at most
        this value (DINO's ``clip_gradients``). 0: no clipping."""
        return 0.0

    def weight_decay_end(self) -> float | None:
        """A float: the weight decay of the decayed parameters follows a cosine, per step, from
        its configured value to this one (DINO's 0.04 -> 0.4). None: constant."""
        return None

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers by sub-module name (e.g. ``{"predictor": 10.0}``); the
        optimiser gives those parameters ``lr * multiplier``. Default: none."""
        return {}

    @property
    def out_dim(self) -> int:
        out_dim: Any = self.backbone.out_dim  # every backbone declares it (ssl_bench.backbones)
        return int(out_dim)
