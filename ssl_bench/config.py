"""Run configuration: one flat dataclass, presets, validation, a stable hash.

A config file (YAML or JSON) holds the same keys as :class:`RunConfig`; unknown keys and
wrong types are rejected with a one-line :class:`ConfigError`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: Training budgets. ``None`` = the whole split. ``quick`` is the default of ``ssl-bench run``.
PRESETS: dict[str, dict[str, Any]] = {
    # seconds: for tests and for trying a new plugin
    "smoke": dict(epochs=1, batch_size=128, train_subset=2048, eval_train_subset=2048, eval_test_subset=1000,
                  knn_monitor_every=0),
    # minutes on 2 CPU cores for the default dataset: the README's leaderboard. Batch 128 (312
    # steps) rather than 256 (156): EMA-target methods need steps; at 156 BYOL stayed below
    # random-init (79.5 vs 80.6 k-NN top-1) and reached 81.1 at 312 steps, SimCLR 83.5 -> 83.9.
    "quick": dict(epochs=2, batch_size=128, train_subset=20000, eval_train_subset=None, eval_test_subset=None,
                  knn_monitor_every=1),
    # the reference leaderboard (leaderboards/fashion-mnist-standard.md): the whole training set,
    # each method's own recipe, 20 epochs at batch 256 (4,680 steps, 15x quick's 312). On 2 CPU
    # cores one method takes about 1-2.5 h (bf16 / fp32), so the board grows one run at a time
    # (scripts/standard_board.py, resumable); on one GPU the whole board takes minutes.
    "standard": dict(epochs=20, batch_size=256, train_subset=None, eval_train_subset=None, eval_test_subset=None,
                     knn_monitor_every=2),
    # the real thing (a GPU is advised)
    "full": dict(epochs=100, batch_size=256, train_subset=None, eval_train_subset=None, eval_test_subset=None,
                 knn_monitor_every=5),
}

#: Values of the ``precision`` key (see :mod:`ssl_bench.precision`; defined here so that reading a
#: config does not import torch).
PRECISIONS = ("auto", "fp32", "bf16")

#: Keys that do not change what is trained: left out of the config hash.
NON_TRAINING_KEYS = {"device", "data_root", "num_threads", "evaluators", "eval_kwargs", "log_every",
                     "progress", "compile", "knn_monitor_every"}


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

    def __post_init__(self) -> None:
        self.validate()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a mapping of keys to values, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; known keys: {', '.join(sorted(names))}")
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        text = p.read_text()
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

    def with_preset(self) -> "RunConfig":
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
        if self.knn_monitor_every is not None and self.knn_monitor_every < 0:
            raise ConfigError(f"config key 'knn_monitor_every' must be >= 0, got {self.knn_monitor_every}")
        for k in ("epochs", "batch_size", "train_subset", "eval_train_subset", "eval_test_subset"):
            v = getattr(self, k)
            if v is not None and v < 1:
                raise ConfigError(f"config key {k!r} must be >= 1, got {v}")
        if self.batch_size is not None and self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2 (SSL losses compare samples within a batch)")
        if self.optimizer not in ("adamw", "sgd", "lars"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; known: adamw, sgd, lars")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        if not 0 <= self.warmup_frac < 1:
            raise ConfigError("warmup_frac must be in [0, 1)")
        if self.backbone not in ("auto", ""):  # a registered name (imports torch; "auto" does not)
            from .backbones import check_backbone_name

            check_backbone_name(self.backbone)

    # -- identity -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def training_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in NON_TRAINING_KEYS}

    def hash(self) -> str:
        blob = json.dumps(self.training_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def run_id(self, backbone_name: str | None = None) -> str:
        bb = (backbone_name or self.backbone).replace(":", "-").replace("/", "-")
        return f"{self.dataset}-{self.method}-{bb}-{self.preset}-s{self.seed}-{self.hash()}"
