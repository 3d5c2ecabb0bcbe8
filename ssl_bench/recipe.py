"""The resolved recipe of a training configuration, without training: the method's options with
its defaults filled in and the optimiser's learning rate and weight decay, exactly as the trainer
records them in every checkpoint (``meta["recipe"]``). Its digest
(:func:`ssl_bench.results.recipe_hash`) is part of a result row's identity, so a board can tell
a row trained under an older default (stale) from one of today's recipe."""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .registry import METHODS
from .results import recipe_hash


def resolved_recipe(cfg: RunConfig) -> dict[str, Any]:
    """{option: value} of ``cfg``'s method with its defaults filled in (less the options at their
    ``recipe_neutral`` value, :meth:`ssl_bench.method.Method.recipe_options`), plus ``optim.lr`` and
    ``optim.weight_decay`` (the config's, else the method's preference; with ``optimizer: paper``
    the method's paper optimiser, recorded as ``optim.optimizer``)."""
    from .optim import optim_choice

    cfg = cfg.with_preset()
    cls = METHODS.get(cfg.method)
    assert cfg.batch_size is not None  # every preset sets it
    _, lr, wd, extra = optim_choice(cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.batch_size, cls)
    return recipe_record(cls, cls.resolve_hparams(dict(cfg.method_kwargs)), lr, wd, extra)


def recipe_record(cls: Any, hp: dict[str, Any], lr: Any, wd: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """The recipe as the trainer records it and a board recomputes it: the method's resolved
    options ``hp`` (less those at their ``recipe_neutral`` value), the optimiser's lr and weight
    decay, and the entries of :func:`ssl_bench.optim.optim_choice` (``extra``)."""
    return {**cls.recipe_options(hp), "optim.lr": lr, "optim.weight_decay": wd, **extra}


def resolved_recipe_hash(cfg: RunConfig, backbone: str) -> str | None:
    """The recipe digest that a training of ``cfg`` on ``backbone`` would record today."""
    return recipe_hash(resolved_recipe(cfg), cfg.with_preset().to_dict(), backbone)
