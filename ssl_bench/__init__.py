"""ssl-bench: train, evaluate and rank self-supervised representation learners.

Public API (imported lazily by the names below):

* registries: :func:`register_method`, :func:`register_evaluator`, :func:`register_dataset`,
  :func:`register_backbone`;
* contracts: :class:`ssl_bench.method.Method`, :class:`ssl_bench.evaluator.Evaluator`;
* pure parts: :mod:`ssl_bench.losses`, :mod:`ssl_bench.heads`, :mod:`ssl_bench.views`.
"""

__version__ = "0.1.0"

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
]
