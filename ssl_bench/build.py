"""Construction: everything that turns a :class:`~ssl_bench.config.RunConfig` into objects.

The device, the data (the full dataset and its seeded training subset), the backbone choice and
the method with freshly initialised, seeded weights. The trainer, the embeddings (rebuilding a
checkpoint's method), the baselines and the collapse suite all build through these functions,
so a run and its evaluation cannot build the same configuration two ways.

This module imports no harness (trainer, embeddings, evaluators): they import it.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from .backbones import build_backbone, default_backbone
from .config import RunConfig
from .data import Data, load_dataset
from .errors import ConfigError, SSLBenchError
from .method import DataSpec, Method
from .registry import METHODS

#: Seed of the training subset (:func:`train_split`): the same for every method and seed.
TRAIN_SUBSET_SEED = 0


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a CUDA device without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SSLBenchError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def load_data(cfg: RunConfig) -> Data:
    """The full dataset of a config (the training subset is drawn by :func:`train_split`)."""
    return load_dataset(cfg.dataset, root=cfg.data_root, **cfg.dataset_kwargs)


def train_split(cfg: RunConfig, data: Data) -> Data:
    """The training subset of a config: ``train_subset`` samples of the training split, seeded
    and the same for every method and seed (the test split is kept whole)."""
    return data.subset(cfg.train_subset, None, seed=TRAIN_SUBSET_SEED, pretrain=True)


def trained_indices(cfg: RunConfig, data: Data) -> torch.Tensor:
    """The indices of ``data``'s labelled training split that :func:`train_split` trains on: the
    same seeded draw (none when the data has its own pretraining images, as STL-10)."""
    from .sampling import is_subsampled, subsample_indices

    n = len(data.y_train)
    if data.x_pretrain is not None:
        return torch.zeros(0, dtype=torch.long)
    if not is_subsampled(n, cfg.train_subset):
        return torch.arange(n)
    return subsample_indices(n, cfg.train_subset, torch.Generator().manual_seed(TRAIN_SUBSET_SEED))


def data_spec(data: Data, num_train: int | None = None) -> DataSpec:
    """What a method may know of its data: kind, input shape and training-set size."""
    return DataSpec(
        kind=data.kind,
        input_shape=data.input_shape,
        num_train=num_train or len(data.pretrain),
        views=tuple(sorted(data.views.items())),
    )


def backbone_choice(cfg: RunConfig, kind: str) -> tuple[str, dict]:
    """(backbone name, kwargs): the config's, else the method's preference, else the data's default."""
    if cfg.backbone not in ("auto", ""):
        return cfg.backbone, dict(cfg.backbone_kwargs)
    pref = getattr(METHODS.get(cfg.method), "default_backbone", None) if cfg.method in METHODS else None
    if pref and kind in pref:
        name, kwargs = pref[kind]
        return name, {**kwargs, **cfg.backbone_kwargs}
    return default_backbone(kind), dict(cfg.backbone_kwargs)


def backbone_name(cfg: RunConfig, kind: str) -> str:
    """The name of :func:`backbone_choice`."""
    return backbone_choice(cfg, kind)[0]


def unsupported_kind_message(methods: list[str], dataset: str, kind: str) -> str:
    """One line: which methods cannot train on ``dataset`` (of ``kind``) and what they need."""
    needs = sorted({k for m in methods for k in METHODS.get(m).data_kinds})
    return (
        f"method{'s' if len(methods) > 1 else ''} {', '.join(methods)} need{'' if len(methods) > 1 else 's'} "
        f"{' or '.join(needs)} data; dataset {dataset!r} is {kind} data (`--methods all` skips such methods)"
    )


def select_methods(spec: str, dataset: str, kind: str) -> tuple[list[str], list[str]]:
    """(methods to run, methods skipped) for ``--methods spec`` on data of ``kind``: ``all`` keeps
    the methods that support the kind and skips the others; named methods that do not support it
    are a ConfigError."""
    names = METHODS.resolve(spec)
    bad = [m for m in names if not METHODS.get(m).supports(kind)]
    if not bad:
        return names, []
    if str(spec).strip() != "all":
        raise ConfigError(unsupported_kind_message(bad, dataset, kind))
    if len(bad) == len(names):
        raise ConfigError(f"no registered method trains on {kind} data (dataset {dataset!r})")
    return [m for m in names if m not in bad], bad


def build_method(cfg: RunConfig, spec: DataSpec) -> Method:
    """Instantiate the configured method with freshly initialised weights (seeded)."""
    cls = METHODS.get(cfg.method)
    if not cls.supports(spec.kind):
        raise ConfigError(unsupported_kind_message([cfg.method], cfg.dataset, spec.kind))
    torch.manual_seed(cfg.seed)
    name, kwargs = backbone_choice(cfg, spec.kind)
    backbone = build_backbone(name, spec.input_shape, spec.kind, **kwargs)
    method: Method = cls(backbone, cfg.method_kwargs, spec)
    return method
