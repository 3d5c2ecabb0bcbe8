"""The evaluator contract.

Embedding evaluators (the default kind) read cached embeddings::

    Evaluator(**options).evaluate(embeddings) -> {metric: value}

Model evaluators (``needs_model = True``: LiDAR needs augmented views of samples, the
reconstruction fine-tune needs the encoder and the images) get the trained method instead::

    Evaluator(**options).evaluate_model(method, data, device) -> {metric: value}

``method`` is a :class:`ssl_bench.method.Method` in eval mode whose ``encode`` is the judged
representation (do not modify it: copy it to fine-tune), ``data`` the evaluation split
(:class:`ssl_bench.datasets.Data`, images as uint8; feed the encoder
``data.normalize(data.to_float(x))``), ``device`` a ``torch.device``. Model evaluators cannot
run on bare embeddings (``ssl-bench eval-embeddings``) nor on the ``pixels`` baseline.

Evaluators return floats only. Arrays and images go to files: when the harness sets
``artifact_dir`` (``<run>/artifacts/``) and ``artifact_prefix`` (e.g. ``epoch_0010-``),
:meth:`Evaluator.artifact_path` gives a path there and the evaluator records what it wrote in
``self.artifacts`` ({name: path}).

The harness also sets ``precision`` (``"fp32"`` or ``"bf16"``: the precision the model was
trained in, :mod:`ssl_bench.precision`); a model evaluator runs its forward passes under
``with self.autocast(device):``, one forward (+ backward) per context: an autocast context
kept open across optimiser steps would keep serving the bf16 copies of the weights it cast first.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from .embeddings import Embeddings
from .errors import ConfigError


class Evaluator:
    defaults: ClassVar[dict[str, Any]] = {}
    needs_labels: ClassVar[bool] = True
    needs_model: ClassVar[bool] = False
    registry_name: ClassVar[str] = "?"

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ConfigError(f"evaluator {self.registry_name!r} has no option(s) {unknown}; "
                              f"known: {', '.join(sorted(self.defaults)) or '(none)'}")
        self.options = {**self.defaults, **options}
        self.artifact_dir: Path | None = None
        self.artifact_prefix: str = ""
        self.artifacts: dict[str, Path] = {}
        self.precision: str = "fp32"

    def evaluate(self, emb: Embeddings) -> dict[str, float]:
        raise NotImplementedError

    def evaluate_model(self, method, data, device) -> dict[str, float]:
        raise NotImplementedError

    def autocast(self, device):
        """The forward context for ``self.precision`` on ``device`` (a no-op for fp32)."""
        from .precision import autocast

        return autocast(device, self.precision)

    def artifact_path(self, name: str) -> Path | None:
        """``<artifact_dir>/<artifact_prefix><name>`` (directory created), or None if no artifact dir."""
        if self.artifact_dir is None:
            return None
        d = Path(self.artifact_dir)
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{self.artifact_prefix}{name}"

    def __call__(self, emb: Embeddings) -> dict[str, float]:
        if self.needs_model:
            raise ConfigError(f"evaluator {self.registry_name!r} needs the model (a checkpoint), not bare "
                              "embeddings: use `ssl-bench eval CHECKPOINT`")
        if self.needs_labels and (emb.train_y is None or emb.test_y is None):
            raise ConfigError(f"evaluator {self.registry_name!r} needs labels (train_y and test_y)")
        return self.evaluate(emb)

    def run_model(self, method, data, device) -> dict[str, float]:
        """Entry point of the harness for model evaluators."""
        if not self.needs_model:
            raise ConfigError(f"evaluator {self.registry_name!r} reads embeddings, not a model")
        return self.evaluate_model(method, data, device)
