"""Boards declared as data: a small TOML spec per board, and the plan of the runs it needs.

A spec names a dataset, a preset (and config overrides), backbones, methods (with options), seeds,
evaluators and the reference rows (``pixels``, ``random-init``)::

    dataset = "digits"
    preset = "smoke"
    seeds = [0, 1]
    evaluators = ["knn"]
    plugins = ["my_method.py"]          # modules or .py files (relative to the spec) to import
    methods = ["my-method", "simclr", {method = "vicreg", options = {inv_weight = 10.0}}]

    [set]                               # RunConfig keys for every run of the board
    precision = "fp32"

``note`` (a string) ends the table's Markdown as a **Note.** paragraph. A method entry may also
carry its own ``set``, ``seeds`` and ``backbones``. The built-in boards
(``ssl_bench/boards/*.toml``) are named by the stem of their table (``leaderboards/NAME.md``).

:func:`plan` matches the runs a spec asks for against the rows already in the board's rows folder:
a run is *done* when an ok row of the same method, seed, preset, epochs, backbone, method options
and overrides exists; *stale* when that row's ``recipe_hash`` differs from the recipe the run
would be trained with today (a method default changed since); *missing* otherwise.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import ConfigError

#: Folder of the built-in board specs (package data).
BUILTIN_DIR = Path(__file__).resolve().parent / "boards"
REFERENCES = ("pixels", "random-init")
_SPEC_KEYS = {
    "name",
    "description",
    "dataset",
    "preset",
    "kind",
    "backbones",
    "seeds",
    "evaluators",
    "references",
    "plugins",
    "methods",
    "set",
    "note",
}
_ENTRY_KEYS = {"method", "options", "set", "seeds", "backbones"}
#: RunConfig keys a spec's ``set`` may not name: the spec's own fields decide them.
_OWN_KEYS = {"method", "dataset", "preset", "seed", "backbone", "method_kwargs", "evaluators", "progress"}


@dataclass(frozen=True)
class Entry:
    """One method line of a board: its options, overrides, seeds and backbones."""

    method: str
    options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None
    backbones: tuple[str, ...] | None = None


@dataclass(frozen=True)
class BoardSpec:
    name: str
    dataset: str
    preset: str
    entries: tuple[Entry, ...]
    seeds: tuple[int, ...] = (0,)
    backbones: tuple[str, ...] = ("auto",)
    evaluators: tuple[str, ...] = ("default",)
    references: tuple[str, ...] = REFERENCES
    overrides: dict[str, Any] = field(default_factory=dict)
    plugins: tuple[str, ...] = ()
    kind: str | None = None
    description: str = ""
    note: str = ""  # a paragraph ending the table's .md: what the table cannot say (the machine, its load)
    source: str = ""  # the spec file (its name for a built-in)


@dataclass(frozen=True)
class PlannedRun:
    """One (method, backbone, seed) run of a board: its config and what the rows folder holds."""

    cfg: RunConfig
    state: str  # "done" | "missing" | "stale"
    run_id: str | None = None  # the matching run in the rows folder (done / stale)
    recipe_known: bool = True  # False: the matching rows predate recipe digests (schema < 3)
    train_seconds: float | None = None  # of the matching run

    @property
    def label(self) -> str:
        c = self.cfg
        opts = ", ".join(f"{k}={v}" for k, v in sorted(c.method_kwargs.items()))
        extra = f" [{opts}]" if opts else ""
        return f"{c.method}{extra} {c.backbone} seed {c.seed}"


# -- loading ----------------------------------------------------------------------------------------
def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def _str_list(where: str, v: Any, item: type = str) -> tuple:
    if not isinstance(v, list) or not all(isinstance(x, item) and not isinstance(x, bool) for x in v):
        raise ConfigError(f"{where} must be a list of {item.__name__}s, got {v!r}")
    return tuple(v)


def _table(where: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ConfigError(f"{where} must be a table, got {v!r}")
    return dict(v)


def _overrides(where: str, v: Any) -> dict[str, Any]:
    d = _table(where, v)
    names = {f.name for f in dataclasses.fields(RunConfig)}
    bad = sorted(set(d) - names)
    if bad:
        raise ConfigError(f"{where}: unknown config key(s) {bad}")
    own = sorted(set(d) & _OWN_KEYS)
    if own:
        raise ConfigError(f"{where}: {own} are set by the spec's own fields (dataset, preset, methods, seeds ...)")
    return d


def _entry(where: str, v: Any) -> Entry:
    if isinstance(v, str):
        return Entry(v)
    d = _table(where, v)
    bad = sorted(set(d) - _ENTRY_KEYS)
    if bad or "method" not in d or not isinstance(d["method"], str):
        raise ConfigError(f"{where}: a method entry is a name or a table with 'method' and {sorted(_ENTRY_KEYS)}")
    return Entry(
        d["method"],
        _table(f"{where}.options", d.get("options", {})),
        _overrides(f"{where}.set", d.get("set", {})),
        _str_list(f"{where}.seeds", d["seeds"], int) if "seeds" in d else None,
        _str_list(f"{where}.backbones", d["backbones"]) if "backbones" in d else None,
    )


def parse_spec(data: dict[str, Any], name: str, source: str) -> BoardSpec:
    """A :class:`BoardSpec` from the parsed TOML; ConfigError names the first fault."""
    bad = sorted(set(data) - _SPEC_KEYS)
    if bad:
        raise ConfigError(f"board {name}: unknown key(s) {bad}; known: {', '.join(sorted(_SPEC_KEYS))}")
    for k in ("dataset", "methods"):
        if k not in data:
            raise ConfigError(f"board {name}: '{k}' is required")
    if not isinstance(data["dataset"], str) or not isinstance(data.get("preset", "quick"), str):
        raise ConfigError(f"board {name}: 'dataset' and 'preset' are names")
    methods = data["methods"]
    if not isinstance(methods, list) or not methods:
        raise ConfigError(f"board {name}: 'methods' must be a non-empty list")
    refs = _str_list(f"board {name}: references", data.get("references", list(REFERENCES)))
    if set(refs) - set(REFERENCES):
        raise ConfigError(f"board {name}: references are among {list(REFERENCES)}, got {list(refs)}")
    return BoardSpec(
        name=str(data.get("name", name)),
        dataset=data["dataset"],
        preset=data.get("preset", "quick"),
        entries=tuple(_entry(f"board {name}: methods[{i}]", m) for i, m in enumerate(methods)),
        seeds=_str_list(f"board {name}: seeds", data.get("seeds", [0]), int),
        backbones=_str_list(f"board {name}: backbones", data.get("backbones", ["auto"])),
        evaluators=_str_list(f"board {name}: evaluators", data.get("evaluators", ["default"])),
        references=refs,
        overrides=_overrides(f"board {name}: set", data.get("set", {})),
        plugins=_str_list(f"board {name}: plugins", data.get("plugins", [])),
        kind=data.get("kind"),
        description=str(data.get("description", "")),
        note=" ".join(str(data.get("note", "")).split()),
        source=source,
    )


def load_spec(name: str | None = None, path: str | Path | None = None) -> BoardSpec:
    """A built-in board by ``name``, or the spec file ``path``; its plugins are imported."""
    if path is None:
        if name not in builtin_names():
            raise ConfigError(f"unknown board {name!r}; built-in boards: {', '.join(builtin_names())}")
        p = BUILTIN_DIR / f"{name}.toml"
    else:
        p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"board spec {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"board spec {p} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"board spec {p} is not valid TOML: {exc}") from None
    spec = parse_spec(data, p.stem, str(p if path is not None else p.name))
    import_plugins(spec.plugins, p.parent)
    return spec


def import_plugins(plugins: Iterable[str], base: Path) -> None:
    """Import each plugin (a module name, or a ``.py`` file relative to ``base``): its import
    registers its methods, evaluators ... with the registries' decorators."""
    for item in plugins:
        if not item.endswith(".py"):
            try:
                importlib.import_module(item)
            except ImportError as exc:
                raise ConfigError(f"board plugin {item!r} cannot be imported: {exc}") from None
            continue
        path = (base / item).resolve()
        mod_name = f"ssl_bench_board_plugin_{path.stem}"
        if mod_name in sys.modules and getattr(sys.modules[mod_name], "__file__", None) == str(path):
            continue
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None or not path.is_file():
            raise ConfigError(f"board plugin {path} does not exist")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)


# -- planning ---------------------------------------------------------------------------------------
def run_configs(spec: BoardSpec, methods_for_all: list[str] | None = None) -> list[RunConfig]:
    """Every (method, backbone, seed) config the spec asks for, in the spec's order (seed-major).
    ``"all"`` in ``methods`` expands to ``methods_for_all`` (the registered methods the data allows)."""
    from .registry import EVALUATORS, METHODS

    EVALUATORS.resolve(list(spec.evaluators))
    entries: list[Entry] = []
    for e in spec.entries:
        if e.method == "all":
            entries += [dataclasses.replace(e, method=m) for m in (methods_for_all or METHODS.names())]
        else:
            METHODS.get(e.method).resolve_hparams(dict(e.options))  # unknown names and options: one-line errors
            entries.append(e)
    out = []
    for seed in sorted({s for e in entries for s in (e.seeds or spec.seeds)}):
        for e in entries:
            if seed not in (e.seeds or spec.seeds):
                continue
            for bb in e.backbones or spec.backbones:
                d = {
                    **spec.overrides,
                    **e.overrides,
                    "dataset": spec.dataset,
                    "preset": spec.preset,
                    "method": e.method,
                    "seed": seed,
                    "backbone": bb,
                    "method_kwargs": dict(e.options),
                    "evaluators": list(spec.evaluators),
                    "progress": False,
                }
                out.append(RunConfig.from_dict(d))
    return out


def _first_rows(rows: list[dict]) -> dict[str, dict]:
    """{run_id: a representative ok row} (the newest), and failed runs apart (not done)."""
    runs: dict[str, dict] = {}
    for r in rows:
        if r.get("status", "ok") != "ok" or r.get("value") is None:
            continue
        prev = runs.get(r["run_id"])
        if prev is None or str(r.get("timestamp") or "") >= str(prev.get("timestamp") or ""):
            runs[r["run_id"]] = r
    return runs


def _defaults() -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(RunConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _matches(row: dict, cfg: RunConfig) -> bool:
    """Whether ``row``'s run is the run of ``cfg``: every training key equal (the seed included,
    the preset's budget filled in); a key the row's config lacks (added since) has its default."""
    from .config import NON_TRAINING_KEYS

    c = row.get("config") or {}
    defaults = _defaults()
    want = cfg.with_preset().to_dict()
    return all(c.get(k, defaults.get(k)) == v for k, v in want.items() if k not in NON_TRAINING_KEYS)


def plan(spec: BoardSpec, rows: list[dict], configs: list[RunConfig]) -> list[PlannedRun]:
    """The state of each of ``configs`` given the rows of the board's rows folder."""
    from .recipe import resolved_recipe_hash

    runs = _first_rows(rows)
    out = []
    for cfg in configs:
        found = [r for r in runs.values() if r.get("method") == cfg.method and _matches(r, cfg)]
        if not found:
            out.append(PlannedRun(cfg, "missing"))
            continue
        known = [r for r in found if r.get("recipe_hash")]
        if not known:  # rows of schema < 3: the recipe they ran is not recorded
            r = found[-1]
            out.append(PlannedRun(cfg, "done", r["run_id"], False, r.get("train_seconds")))
            continue
        today = resolved_recipe_hash(cfg, str(known[0].get("backbone")))
        fresh = [r for r in known if r["recipe_hash"] == today]
        r = (fresh or known)[-1]
        out.append(PlannedRun(cfg, "done" if fresh else "stale", r["run_id"], True, r.get("train_seconds")))
    return out
