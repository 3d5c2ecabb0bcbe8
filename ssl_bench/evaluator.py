"""The evaluator contract.

Embedding evaluators (the default kind) read cached embeddings::

    Evaluator(**options).evaluate(embeddings) -> {metric: value}

Model evaluators (``needs_model = True``: LiDAR needs augmented views of samples, the
reconstruction fine-tune needs the encoder and the images) get the trained method instead::

    Evaluator(**options).evaluate_model(method, data, device) -> {metric: value}

``method`` is a :class:`ssl_bench.method.Method` in eval mode whose ``encode`` is the judged
representation (do not modify it: copy it to fine-tune), ``data`` the evaluation split
(:class:`ssl_bench.data.Data`, images as uint8; feed the encoder
``data.normalize(data.to_float(x))``), ``device`` a ``torch.device``. Model evaluators cannot
run on bare embeddings (``ssl-bench eval-embeddings``) nor on the ``pixels`` baseline.

Evaluators return floats only. Arrays and images go to files: when the harness sets
``artifact_dir`` (``<run>/artifacts/`` for runs and baselines alike,
:func:`ssl_bench.checkpoint.artifact_dir`) and ``artifact_prefix`` (e.g. ``epoch_0010-``),
:meth:`Evaluator.artifact_path` gives a path there and the evaluator records what it wrote in
``self.artifacts`` ({name: path}).

The harness also sets ``precision`` (``"fp32"`` or ``"bf16"``: the precision the model was
trained in, :mod:`ssl_bench.precision`); a model evaluator runs its forward passes under
``with self.autocast(device):``, one forward (+ backward) per context: an autocast context
kept open across optimiser steps would keep serving the bf16 copies of the weights it cast first.

Evaluators describe their own metrics, as lm-eval and MTEB tasks do: ``metrics`` is a tuple of
:class:`Metric` (name, label, unit, ``higher_is_better``, a one-line description, ``headline``).
The leaderboard builds its columns, legend and sort order from these declarations, so an
evaluator from another package (entry point ``ssl_bench.evaluators``) gets its own columns
without any change to ``ssl_bench/``. ``order`` places an evaluator's columns (lower = further
left), ``default`` says whether it is in the default evaluator list of a run (``evaluators:
["default"]``), ``legend_options`` names the options the legend prints (every option used is
stored in each result row anyway). A metric name the evaluator did not declare (e.g. a k-NN
sweep entry ``top1_k50``) may match a declared ``pattern`` (``fnmatch`` syntax); anything else
gets a neutral description: no direction, not headline.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, TYPE_CHECKING

from .embeddings import Embeddings
from .errors import ConfigError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import torch

    from .data import Data
    from .method import Method


@dataclass(frozen=True)
class Metric:
    """What one metric of an evaluator means."""

    name: str  # the key in the evaluator's result dict, e.g. "top1" (or an fnmatch pattern, see ``pattern``)
    label: str  # column header, e.g. "k-NN top1"
    unit: str = ""  # "%", "dB", "" (dimensionless)
    higher_is_better: bool | None = True  # None: no direction (a diagnostic, not a score)
    description: str = ""  # one line, printed in the legend
    headline: bool = False  # shown in the Markdown table (the CSV has every metric)
    pattern: bool = False  # ``name`` is an fnmatch pattern covering a family of metrics
    categorical: dict | None = None  # code -> word (e.g. the collapse verdict); shown as the word
    #: one of a family of per-class values: in the rows, JSON and the CSV, left out of
    #: one-line text summaries (``run``'s per-run line, ``eval``), which give their count instead
    detail: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


#: Ranges of option names shared by the evaluators: (low, high, low inclusive, high inclusive).
_OPTION_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "k": (1, 1e6, True, True),
    "temperature": (0, math.inf, False, False),
    "lr": (0, math.inf, False, False),
    "finetune_lr": (0, math.inf, False, False),
    "delta": (0, math.inf, False, False),
    "eps": (0, math.inf, False, False),
    "val_frac": (0, 1, False, False),
    "mask_ratio": (0, 1, True, False),
    "noise_std": (0, math.inf, True, False),
    "seed": (0, 2**32 - 1, True, True),
    "complete_std_ratio": (0, math.inf, False, False),
    "dimensional_ratio": (0, math.inf, False, False),
    "n_views": (2, 1e4, True, True),
    "nlist": (0, 1e7, True, True),
    "nprobe": (0, 1e7, True, True),
    "fit_start": (0, 1e9, True, True),
    "fit_stop": (0, 1e9, True, True),
    "epochs_frozen": (0, 1e4, True, True),
    "epochs_finetune": (0, 1e4, True, True),
    "n_pairs": (1, 1e6, True, True),
    "sigreg_directions": (1, 4096, True, True),
    "grid": (1, 64, True, True),
    "hidden": (1, 1 << 16, True, True),
    "max_iter": (1, 1e5, True, True),
    "sweep_iter": (1, 1e5, True, True),
    "epochs": (1, 1e4, True, True),
    "per_class_max": (0, 1e6, True, True),
}
#: Counts that only cap a subsample (larger than the data = all of it) may be large; other
#: integer counts stay below 1e6 (each unit costs time or memory).
_CAP_NAMES = ("max_samples", "sweep_samples", "sigreg_samples", "n_train", "n_test", "n_samples")
#: List options: (entry low, entry high, low inclusive, may be empty).
_LIST_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "ks": (1, 1e6, True, True),
    "temperatures": (0, math.inf, False, True),
    "weight_decays": (0, math.inf, True, False),
    "fractions": (0, 1, False, False),
}


def check_option(evaluator: str, key: str, default: Any, v: Any) -> Any:
    """An evaluator option checked against its default's type and the known ranges; one-line ConfigError."""
    where = f"evaluator {evaluator!r} option {key!r}"
    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise ConfigError(f"{where} must be true/false, got {v!r}")
        return v
    if _num(default):
        if not _num(v) or (isinstance(v, float) and not math.isfinite(v)):
            raise ConfigError(f"{where} must be a finite number, got {v!r}")
        if isinstance(default, int) and not float(v).is_integer():
            raise ConfigError(f"{where} must be an integer, got {v!r}")
        v = type(default)(v)
        lo, hi, lo_inc, hi_inc = _OPTION_RANGES.get(
            key,
            (
                (1, 1e8 if key in _CAP_NAMES else 1e6, True, True)
                if isinstance(default, int) and default >= 1
                else (-math.inf, math.inf, True, True)
            ),
        )
        if not ((lo <= v if lo_inc else lo < v) and (v <= hi if hi_inc else v < hi)):
            raise ConfigError(
                f"{where} must lie in {'[' if lo_inc else '('}{lo:g}, {hi:g}{']' if hi_inc else ')'}, got {v!r}"
            )
        return v
    if isinstance(default, str):
        if not isinstance(v, str):
            raise ConfigError(f"{where} must be a string, got {v!r}")
        return v
    if isinstance(default, (list, tuple)):
        if not isinstance(v, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {v!r}")
        if key in _LIST_RANGES:
            lo, hi, lo_inc, may_be_empty = _LIST_RANGES[key]
            if not v and not may_be_empty:
                raise ConfigError(f"{where} may not be empty")
            for x in v:
                if (
                    not _num(x)
                    or not math.isfinite(x)
                    or not ((lo <= x if lo_inc else lo < x) and x <= hi)
                    or (key == "ks" and not float(x).is_integer())
                ):
                    raise ConfigError(
                        f"{where}: every entry must be a{'n integer' if key == 'ks' else ' number'} in "
                        f"{'[' if lo_inc else '('}{lo:g}, {hi:g}], got {x!r}"
                    )
        return list(v)
    return v


#: Class labels beyond this are a mistake (a k-NN vote allocates a score per class).
MAX_CLASSES = 100_000


class Evaluator:
    defaults: ClassVar[dict[str, Any]] = {}
    needs_labels: ClassVar[bool] = True
    needs_model: ClassVar[bool] = False
    registry_name: ClassVar[str] = "?"
    #: the evaluator's version, recorded in every result row: raise it when a change of the code
    #: changes its numbers; ``leaderboard`` and ``compare`` refuse to mix rows of two versions
    version: ClassVar[str] = "1"
    #: the metrics this evaluator returns (see :class:`Metric`)
    metrics: ClassVar[tuple[Metric, ...]] = ()
    #: column position of the evaluator's metrics in tables (lower = further left)
    order: ClassVar[int] = 100
    #: part of the default evaluator list (``evaluators: ["default"]``)
    default: ClassVar[bool] = True
    #: options printed in the leaderboard legend (all options are stored in every result row)
    legend_options: ClassVar[tuple[str, ...]] = ()
    #: option overrides per training preset ({"smoke": {...}, "full": {...}}); a config's
    #: ``eval_kwargs`` win over them (ssl_bench.pipeline.eval_options)
    preset_options: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def metric(cls, name: str) -> Metric:
        """The declaration of metric ``name``: exact, else the first matching pattern, else neutral."""
        for m in cls.metrics:
            if not m.pattern and m.name == name:
                return m
        for m in cls.metrics:
            if m.pattern and fnmatch.fnmatchcase(name, m.name):
                return Metric(
                    name,
                    f"{m.label} ({name})",
                    m.unit,
                    m.higher_is_better,
                    m.description,
                    False,
                    categorical=m.categorical,
                    detail=m.detail,
                )
        return Metric(
            name,
            f"{cls.registry_name} {name}",
            higher_is_better=None,
            description=f"{cls.registry_name} metric {name!r} (not declared by the evaluator)",
        )

    @classmethod
    def resolved_options(cls, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The options an instance built with ``options`` runs with (defaults filled in)."""
        return {**cls.defaults, **(options or {})}

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ConfigError(
                f"evaluator {self.registry_name!r} has no option(s) {unknown}; "
                f"known: {', '.join(sorted(self.defaults)) or '(none)'}"
            )
        checked = {k: check_option(self.registry_name, k, self.defaults[k], v) for k, v in options.items()}
        self.options = {**self.defaults, **checked}
        self.artifact_dir: Path | None = None
        self.artifact_prefix: str = ""
        self.artifacts: dict[str, Path] = {}
        self.precision: str = "fp32"

    def evaluate(self, emb: Embeddings) -> dict[str, float]:
        raise NotImplementedError

    def evaluate_model(self, method: Method, data: Data, device: torch.device) -> dict[str, float]:
        raise NotImplementedError

    def autocast(self, device: torch.device) -> AbstractContextManager[Any]:
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
            raise ConfigError(
                f"evaluator {self.registry_name!r} needs the model (a checkpoint), not bare "
                "embeddings: use `ssl-bench eval CHECKPOINT`"
            )
        if self.needs_labels and (emb.train_y is None or emb.test_y is None):
            raise ConfigError(f"evaluator {self.registry_name!r} needs labels (train_y and test_y)")
        if self.needs_labels:
            for split in ("train_y", "test_y"):
                y = getattr(emb, split)
                if len(y) and (int(y.min()) < 0 or int(y.max()) >= MAX_CLASSES):
                    raise ConfigError(
                        f"{split} labels must lie in [0, {MAX_CLASSES}), found {int(y.min())}..{int(y.max())}"
                    )
        return self.evaluate(emb)

    def run_model(self, method: Method, data: Data, device: torch.device) -> dict[str, float]:
        """Entry point of the harness for model evaluators."""
        if not self.needs_model:
            raise ConfigError(f"evaluator {self.registry_name!r} reads embeddings, not a model")
        return self.evaluate_model(method, data, device)


def metric_word(evaluator: str, metric: str, value: Any) -> str | None:
    """The word a categorical metric's value stands for (e.g. the collapse verdict ``ok``), else None."""
    from .registry import EVALUATORS

    if evaluator not in EVALUATORS.names() or not _num(value) or not math.isfinite(value):
        return None
    info = EVALUATORS.get(evaluator).metric(metric)
    return None if not info.categorical else info.categorical.get(int(round(value)))


def readable(evaluator: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` plus, for each categorical metric ``X_code`` (or ``X``), its word under ``X``
    (``verdict_code: 0.0`` -> also ``verdict: "ok"``), so JSON and logs need no lookup table."""
    out = dict(metrics)
    for name, value in metrics.items():
        word = metric_word(evaluator, name, value)
        key = name[: -len("_code")] if name.endswith("_code") else f"{name}_word"
        if word is not None and key not in metrics:
            out[key] = word
    return out


def format_metrics(evaluator: str, metrics: dict[str, Any], digits: int = 2, sep: str = ", ", prefix: str = "") -> str:
    """``metric=value`` pairs joined by ``sep`` (each after ``prefix``, e.g. ``"knn."``), without
    the ``detail`` metrics (per class): their count closes the line (``+24 per-class values in
    the result rows``)."""
    from .registry import EVALUATORS

    try:
        cls = EVALUATORS.get(evaluator)
        detail = {k for k in metrics if cls.metric(k).detail}
    except Exception:  # an evaluator not installed here: every metric shown
        detail = set()
    parts = [prefix + format_metric(evaluator, k, v, digits) for k, v in metrics.items() if k not in detail]
    if detail:
        parts.append(f"+{len(detail)} per-class values in the result rows")
    return sep.join(parts)


def format_metric(evaluator: str, metric: str, value: Any, digits: int = 2) -> str:
    """``metric=value`` for logs, the word for a categorical metric (``verdict=ok``)."""
    word = metric_word(evaluator, metric, value)
    if word is not None:
        return f"{metric[: -len('_code')] if metric.endswith('_code') else metric}={word}"
    return f"{metric}={value:.{digits}f}" if _num(value) else f"{metric}={value}"
