"""ssl-bench: train, evaluate and rank self-supervised representation learners.

Public API (imported lazily by the names below):

* registries: :func:`register_method`, :func:`register_evaluator`, :func:`register_dataset`,
  :func:`register_backbone`;
* contracts: :class:`ssl_bench.method.Method`, :class:`ssl_bench.evaluator.Evaluator`;
* pure parts: :mod:`ssl_bench.losses`, :mod:`ssl_bench.heads`, :mod:`ssl_bench.views`;
* :func:`evaluate`: any encoder (an ``nn.Module`` or a SPEC such as ``"timm:resnet18"``) judged by
  the evaluators, rows as a pandas DataFrame (docs/evaluate-your-encoder.md).
"""

from ._version import __version__
from .registry import (
    BACKBONES,
    DATASETS,
    EVALUATORS,
    METHODS,
    register_backbone,
    register_dataset,
    register_evaluator,
    register_method,
)

__all__ = [
    "__version__",
    "register_method",
    "register_evaluator",
    "register_dataset",
    "register_backbone",
    "METHODS",
    "EVALUATORS",
    "DATASETS",
    "BACKBONES",
    "evaluate",
]


def __getattr__(name: str) -> object:
    """``ssl_bench.evaluate(model, dataset=..., evaluators=(...))``: imported on first use, so that
    ``import ssl_bench`` stays cheap (:func:`ssl_bench.external_eval.evaluate`)."""
    if name == "evaluate":
        from .external_eval import evaluate

        return evaluate
    raise AttributeError(f"module 'ssl_bench' has no attribute {name!r}")
