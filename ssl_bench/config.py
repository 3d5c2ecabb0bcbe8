"""Run configuration: one flat dataclass, presets, validation, a stable hash.

A config file (YAML or JSON) holds the same keys as :class:`RunConfig`; unknown keys and
wrong types are rejected with a one-line :class:`ConfigError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError, not_a_file

#: Training budgets. ``None`` = the whole split. ``quick`` is the default of ``ssl-bench run``.
PRESETS: dict[str, dict[str, Any]] = {
    # seconds: for tests and for trying a new plugin
    "smoke": dict(
        epochs=1, batch_size=128, train_subset=2048, eval_train_subset=2048, eval_test_subset=1000, knn_monitor_every=0
    ),
    # minutes on a few CPU cores for the default dataset: the README's first command. Batch 128
    # (312 steps) rather than 256 (156): EMA-target methods need steps (measured: docs/benchmarks.md
    # section 10).
    "quick": dict(
        epochs=2, batch_size=128, train_subset=20000, eval_train_subset=None, eval_test_subset=None, knn_monitor_every=1
    ),
    # the reference leaderboard (leaderboards/fashion-mnist-standard.md): the whole training set,
    # each method's own recipe, 20 epochs at batch 256 (4,680 steps, 15x quick's 312). On 2 CPU
    # cores one method takes about 1-2.5 h (bf16 / fp32), so the board grows one run at a time
    # (ssl-bench board fashion-mnist-standard, resumable); on one GPU the whole board takes minutes.
    "standard": dict(
        epochs=20, batch_size=256, train_subset=None, eval_train_subset=None, eval_test_subset=None, knn_monitor_every=2
    ),
    # equal wall-clock training (ssl_bench.budget): 60 s of training on a 2-core CPU (on one GPU pass
    # --time-budget 10), cut into 5 equal parts with a checkpoint and a k-NN monitor check after
    # each (a 5-point time-to-accuracy curve in monitor.csv). Batch 128 as in quick: steps matter
    # more than batch size in a minute. The whole training split but 1000 images, which stay unseen:
    # the monitor's held-out queries (ssl_bench.monitor). The boards: `ssl-bench board
    # fashion-mnist-speedrun-cpu` and `... fashion-mnist-speedrun-gpu` (docs/benchmarks.md section 11)
    "speedrun": dict(
        epochs=5,
        batch_size=128,
        train_subset=59000,
        eval_train_subset=None,
        eval_test_subset=None,
        knn_monitor_every=1,
        time_budget=60.0,
    ),
    # the real thing (a GPU is advised)
    "full": dict(
        epochs=100,
        batch_size=256,
        train_subset=None,
        eval_train_subset=None,
        eval_test_subset=None,
        knn_monitor_every=5,
    ),
}

#: Values of the ``precision`` key (see :mod:`ssl_bench.precision`; defined here so that reading a
#: config does not import torch).
PRECISIONS = ("auto", "fp32", "bf16")

#: Keys that do not change what is trained: left out of the config hash.
#: Upper bounds: beyond them a value is a typo (``epochs: 1e20`` would train with lr ~ 0 forever).
LIMITS = {
    "epochs": 100_000,
    "batch_size": 1 << 24,
    "train_subset": 1 << 40,
    "eval_train_subset": 1 << 40,
    "eval_test_subset": 1 << 40,
    "seed": (1 << 32) - 1,
    "num_threads": 4096,
    "log_every": 1 << 30,
}
#: ``device`` values: auto, cpu, cuda, cuda:N, mps.
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)$")
#: View options that are fractions of the image or probabilities.
_VIEW_UNIT_PAIRS = ("crop_scale", "context_scale", "target_scale")
_VIEW_POSITIVE_PAIRS = ("crop_ratio", "target_aspect", "scale")

NON_TRAINING_KEYS = {
    "device",
    "data_root",
    "num_threads",
    "evaluators",
    "eval_kwargs",
    "log_every",
    "progress",
    "compile",
    "knn_monitor_every",
    "num_workers",
}


@dataclass
class RunConfig:
    method: str = "simclr"
    dataset: str = "fashion-mnist"
    backbone: str = "auto"
    preset: str = "quick"
    seed: int = 0
    epochs: int | None = None
    batch_size: int | None = None
    train_subset: int | None = None
    eval_train_subset: int | None = None
    eval_test_subset: int | None = None
    optimizer: str = "adamw"
    lr: float | None = None
    weight_decay: float | None = None
    warmup_frac: float = 0.1
    method_kwargs: dict = field(default_factory=dict)
    backbone_kwargs: dict = field(default_factory=dict)
    dataset_kwargs: dict = field(default_factory=dict)
    views: dict = field(default_factory=dict)
    # "default": every registered evaluator that declares itself part of the default list
    # (``Evaluator.default``), in their declared ``order`` (ssl_bench.registry.Registry.resolve)
    evaluators: list = field(default_factory=lambda: ["default"])
    eval_kwargs: dict = field(default_factory=dict)
    device: str = "auto"
    num_threads: int | None = None
    data_root: str | None = None
    log_every: int = 50
    progress: bool = True
    compile: bool = False
    precision: str = "auto"  # auto | fp32 | bf16 (ssl_bench.precision)
    knn_monitor_every: int | None = None  # online k-NN monitor every N epochs, 0 = off (ssl_bench.monitor)
    # decoding workers of a streamed dataset (ssl_bench.streaming); None: from the CPU count, 0: in the loop
    num_workers: int | None = None
    # seconds of training (ssl_bench.budget): the steps are fixed from a throughput probe, epochs = parts
    time_budget: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a mapping of keys to values, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; known keys: {', '.join(sorted(names))}")
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(not_a_file("config file", p))
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config file {p} is not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r})"
            ) from None
        except OSError as exc:
            raise ConfigError(f"config file {p} cannot be read: {exc.strerror or exc}") from None
        try:
            if p.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"config file {p} is not valid {p.suffix.lstrip('.') or 'JSON'}: {first}") from exc
        return cls.from_dict(data or {})

    def with_preset(self) -> RunConfig:
        """Fill the budget fields left as None from the preset."""
        d = asdict(self)
        for k, v in PRESETS[self.preset].items():
            if d[k] is None:
                d[k] = v
        return RunConfig(**d)

    # -- checks -------------------------------------------------------------------------------
    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; known presets: {', '.join(PRESETS)}")
        for f in fields(self):
            v = getattr(self, f.name)
            t = str(f.type)
            if v is None:
                if "None" not in t:
                    raise ConfigError(f"config key {f.name!r} may not be null")
                continue
            if t.startswith("int") and (isinstance(v, bool) or not isinstance(v, int)):
                raise ConfigError(f"config key {f.name!r} must be an integer, got {v!r}")
            if t.startswith("float") and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ConfigError(f"config key {f.name!r} must be a number, got {v!r}")
            if t.startswith("str") and not isinstance(v, str):
                raise ConfigError(f"config key {f.name!r} must be a string, got {v!r}")
            if t == "dict" and not isinstance(v, dict):
                raise ConfigError(f"config key {f.name!r} must be a mapping, got {v!r}")
            if t == "list" and not isinstance(v, list):
                raise ConfigError(f"config key {f.name!r} must be a list, got {v!r}")
            if t == "bool" and not isinstance(v, bool):
                raise ConfigError(f"config key {f.name!r} must be true/false, got {v!r}")
        if self.num_workers is not None and not 0 <= self.num_workers <= 256:
            raise ConfigError(f"config key 'num_workers' must be in [0, 256], got {self.num_workers}")
        if self.time_budget is not None and not (math.isfinite(self.time_budget) and 0 < self.time_budget <= 1e7):
            raise ConfigError(f"time_budget must be a number of seconds in (0, 1e7], got {self.time_budget}")
        if self.knn_monitor_every is not None and self.knn_monitor_every < 0:
            raise ConfigError(f"config key 'knn_monitor_every' must be >= 0, got {self.knn_monitor_every}")
        for k in ("epochs", "batch_size", "train_subset", "eval_train_subset", "eval_test_subset"):
            v = getattr(self, k)
            if v is not None and v < 1:
                raise ConfigError(f"config key {k!r} must be >= 1, got {v}")
        if self.batch_size is not None and self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2 (SSL losses compare samples within a batch)")
        if self.optimizer not in ("adamw", "sgd", "lars", "paper"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; known: adamw, sgd, lars, paper")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        if not 0 <= self.warmup_frac < 1:
            raise ConfigError("warmup_frac must be in [0, 1)")
        if self.backbone not in ("auto", ""):  # a registered name (imports torch; "auto" does not)
            from .backbones import check_backbone_name

            check_backbone_name(self.backbone)
        for k, hi in LIMITS.items():
            v = getattr(self, k)
            if v is not None and not 0 <= v <= hi:
                raise ConfigError(f"config key {k!r} must be in [{0 if k == 'seed' else 1}, {hi}], got {v}")
        for k in ("num_threads", "log_every"):
            v = getattr(self, k)
            if v is not None and v < 1:
                raise ConfigError(f"config key {k!r} must be >= 1, got {v}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr}")
        if self.weight_decay is not None and not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not DEVICE_RE.match(self.device.strip()):
            raise ConfigError(f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:N")
        for k in ("method", "dataset", "backbone"):
            if not getattr(self, k).strip():
                raise ConfigError(f"config key {k!r} may not be empty")
        if not self.evaluators:
            raise ConfigError("evaluators is empty: name at least one evaluator (see `ssl-bench list evaluators`)")
        for e in self.evaluators:
            if not isinstance(e, str) or not e.strip():
                raise ConfigError(f"evaluators must be a list of evaluator names, got {self.evaluators!r}")
        dup = sorted({e for e in self.evaluators if self.evaluators.count(e) > 1})
        if dup:
            raise ConfigError(f"evaluator(s) {dup} listed twice")
        for ev, opts in self.eval_kwargs.items():
            if not isinstance(opts, dict):
                raise ConfigError(f"eval_kwargs.{ev} must be a mapping of options, got {opts!r}")
        if "root" in self.dataset_kwargs:  # one way to name the data folder, never from a file's options
            raise ConfigError("dataset_kwargs may not set 'root': give the folder with --data-root (data_root)")
        for name in ("method_kwargs", "backbone_kwargs", "dataset_kwargs", "views"):
            for key, v in getattr(self, name).items():
                if not isinstance(key, str):
                    raise ConfigError(f"{name} keys must be strings, got {key!r}")
                _check_finite(f"{name}.{key}", v)
        self._validate_views()

    def _validate_views(self) -> None:
        for k, v in self.views.items():
            if k in _VIEW_UNIT_PAIRS + _VIEW_POSITIVE_PAIRS:
                if (
                    not isinstance(v, (list, tuple))
                    or len(v) != 2
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                ):
                    raise ConfigError(f"views.{k} must be a pair [low, high] of numbers, got {v!r}")
                lo, hi = v
                top = 1.0 if k in _VIEW_UNIT_PAIRS else math.inf
                if not 0 < lo <= hi <= top:
                    raise ConfigError(
                        f"views.{k} must satisfy 0 < low <= high" + (" <= 1" if top == 1.0 else "") + f", got {list(v)}"
                    )
            elif k.endswith("_p") or k in ("mask_ratio",):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                    raise ConfigError(f"views.{k} must be a probability in [0, 1], got {v!r}")
            elif k in ("noise_std", "jitter", "rotate_deg"):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                    raise ConfigError(f"views.{k} must be a number >= 0, got {v!r}")
            elif k == "mask_patch":
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ConfigError(f"views.{k} must be an integer >= 1, got {v!r}")

    # -- identity -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def training_dict(self) -> dict[str, Any]:
        return training_keys(asdict(self))

    def hash(self) -> str:
        blob = json.dumps(self.training_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def run_id(self, backbone_name: str | None = None) -> str:
        bb = (backbone_name or self.backbone).replace(":", "-").replace("/", "-")
        return f"{self.dataset}-{self.method}-{bb}-{self.preset}-s{self.seed}-{self.hash()}"


def training_keys(d: dict[str, Any]) -> dict[str, Any]:
    """The keys of a config mapping that change what is trained (its hash). ``time_budget`` only
    when set: configs written before the key existed keep their hash."""
    return {k: v for k, v in d.items() if k not in NON_TRAINING_KEYS and not (k == "time_budget" and v is None)}


def _check_finite(where: str, v: Any, depth: int = 0) -> None:
    """Numbers inside option mappings must be finite (NaN/inf from YAML's .nan/.inf are typos)."""
    if depth > 20:
        raise ConfigError(f"{where} is nested too deeply")
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{where} must be a finite number, got {v}")
    if isinstance(v, complex):
        raise ConfigError(f"{where} must be a real number, got {v}")
    if isinstance(v, dict):
        for k, x in v.items():
            _check_finite(f"{where}.{k}", x, depth + 1)
    elif isinstance(v, (list, tuple)):
        for x in v:
            _check_finite(where, x, depth + 1)


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """``--seeds``, in every command: a list and/or ranges of seeds, ``0,1,2``, ``0-2``, ``5``
    (seed 5 alone), ``0-2,7``; a trailing comma is allowed (``5,``)."""
    seeds: list[int] = []
    for part in (s.strip() for s in str(text).split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise ConfigError(f"{flag} takes seeds like 0,1,2 or 0-2, got {text!r}") from None
        if first < 0 or last < first or last - first >= 10_000:
            raise ConfigError(f"{flag} {part!r}: seeds are integers >= 0; a range A-B needs A <= B and < 10000 seeds")
        seeds += [x for x in range(first, last + 1) if x not in seeds]
    if not seeds:
        raise ConfigError(f"{flag} is empty")
    return seeds
