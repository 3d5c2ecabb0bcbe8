"""The evaluator contract: ``Evaluator(**options).evaluate(embeddings) -> {metric: value}``."""
from __future__ import annotations

from typing import Any, ClassVar

from .embeddings import Embeddings
from .errors import ConfigError


class Evaluator:
    defaults: ClassVar[dict[str, Any]] = {}
    needs_labels: ClassVar[bool] = True
    registry_name: ClassVar[str] = "?"

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ConfigError(f"evaluator {self.registry_name!r} has no option(s) {unknown}; "
                              f"known: {', '.join(sorted(self.defaults)) or '(none)'}")
        self.options = {**self.defaults, **options}

    def evaluate(self, emb: Embeddings) -> dict[str, float]:
        raise NotImplementedError

    def __call__(self, emb: Embeddings) -> dict[str, float]:
        if self.needs_labels and (emb.train_y is None or emb.test_y is None):
            raise ConfigError(f"evaluator {self.registry_name!r} needs labels (train_y and test_y)")
        return self.evaluate(emb)
