"""Collapse regression suite: facts from the literature held as fast CI checks.

A *cases file* (TOML) lists cases; each trains one method through the normal trainer on tiny
data for a step budget, for each seed, and judges the last checkpoint with the ``collapse``
evaluator (plus ``rankme`` / ``knn`` when the case bounds their metrics)::

    [defaults]                      # optional; every case starts from these
    dataset = "mog2d"
    steps = 300                     # optimiser steps (epochs = ceil(steps / steps per epoch))
    seeds = [0, 1, 2, 3, 4]
    check_every = 100               # a collapse case is judged every ~100 steps and stops once
    settle = 3                      # 3 checks in a row gave the same agreeing verdict (0: off)
    [defaults.config]               # any RunConfig key (batch_size, lr, backbone_kwargs, views...)
    batch_size = 256

    [[case]]
    name = "simsiam-no-stopgrad"    # unique
    method = "simsiam"              # any registered method, entry-point plugins included
    quick = true                    # part of the PR-sized check (`check-collapse --quick`)
    options = { stop_gradient = false }   # method options (the method's `defaults` keys)
    config = { lr = 0.01 }          # optional RunConfig overrides for this case
    expect = "complete"             # ok | dimensional | complete, or a list of them (e.g. any collapse:
                                    # ["dimensional", "complete"]); optional if bounds are given
    bounds = { "collapse.std_ratio" = { max = 0.05 }, "rankme.rank" = { min = 2 } }
    represent = "backbone"          # what is judged: the backbone (default: what users keep) or a
                                    # head module of the method applied after it, e.g. "projector",
                                    # or a layer inside that head, e.g. "projector.net.6"

A case *agrees* on a seed when the verdict is (one of) ``expect`` and every bound holds; it passes
when it agrees on every seed. ``xfail = "why"`` marks a literature fact known not to reproduce at
the case's budget: it still runs and is shown (XFAIL, or XPASS when it agrees on every seed)
without failing the suite. :func:`run_suite` returns the results, :func:`format_table` the
table ``ssl-bench check-collapse`` prints.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TYPE_CHECKING

from ssl_bench.evaluators.collapse import VERDICTS, verdict

from .errors import ConfigError, not_a_file

if TYPE_CHECKING:
    import torch

    from .config import RunConfig
    from .data import Data
    from .embeddings import Embeddings
    from .method import Method

CASE_KEYS = {
    "name",
    "method",
    "options",
    "config",
    "dataset",
    "steps",
    "seeds",
    "expect",
    "bounds",
    "note",
    "represent",
    "xfail",
    "check_every",
    "settle",
    "quick",
}
DEFAULT_KEYS = CASE_KEYS - {"name", "method", "expect", "bounds", "note", "xfail", "quick"}
#: Metrics every case reports in the table (when computed).
KEY_METRICS = ("collapse.std_ratio", "collapse.dims99", "collapse.mean_cos", "collapse.sigreg")


def builtin_cases_path() -> Path:
    return Path(str(resources.files("ssl_bench") / "collapse_cases.toml"))


@dataclass
class Case:
    name: str
    method: str
    dataset: str = "mog2d"
    steps: int = 300
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    options: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    expect: str | list[str] | None = None
    bounds: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str = ""
    represent: str = "backbone"
    xfail: str | None = None  # a known non-reproduction: reported, does not fail the suite
    check_every: int = 0  # steps between checks of a collapse case's verdict (0: train the whole budget)
    settle: int = 3  # ... that stops once this many checks in a row gave the same agreeing verdict
    quick: bool = False  # part of the PR-sized subset (`check-collapse --quick`)

    @property
    def expected(self) -> list[str]:
        return [] if self.expect is None else [self.expect] if isinstance(self.expect, str) else list(self.expect)

    @property
    def stops_early(self) -> bool:
        """May training stop before ``steps``? Only a collapse fact judged on its verdict alone
        (every expected verdict a collapse, no bounds) with ``check_every`` set: its verdict is
        checked every ``check_every`` steps and training ends once ``settle`` checks in a row gave
        the same agreeing verdict. An ``ok`` fact always trains the whole budget (a random init is
        ``ok`` too)."""
        return self.check_every > 0 and bool(self.expected) and "ok" not in self.expected and not self.bounds

    @property
    def evaluators(self) -> list[str]:
        evs = ["collapse"]
        for key in self.bounds:
            ev = key.split(".", 1)[0]
            if ev not in evs:
                evs.append(ev)
        return evs


@dataclass
class SeedResult:
    seed: int
    verdict: str
    metrics: dict[str, float]  # "evaluator.metric" -> value
    failures: list[str]  # why this seed disagrees (empty = agrees)
    seconds: float
    steps: int = 0  # optimiser steps trained (below the case's budget when it stopped early)
    checks: list[tuple[int, str]] = field(default_factory=list)  # (step, verdict) of each early check

    @property
    def agrees(self) -> bool:
        return not self.failures


@dataclass
class CaseResult:
    case: Case
    seeds: list[SeedResult]

    @property
    def agreement(self) -> int:
        return sum(s.agrees for s in self.seeds)

    @property
    def passed(self) -> bool:
        return self.agreement == len(self.seeds)

    @property
    def status(self) -> str:
        """PASS / FAIL, or for an ``xfail`` case XFAIL (disagrees on some seed) / XPASS (agrees)."""
        if self.case.xfail:
            return "XPASS" if self.passed else "XFAIL"
        return "PASS" if self.passed else "FAIL"

    @property
    def ok(self) -> bool:
        """Does this result keep the suite green? (xfail cases never fail it, as pytest's non-strict xfail)"""
        return self.status != "FAIL"

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case.name,
            "method": self.case.method,
            "options": self.case.options,
            "dataset": self.case.dataset,
            "steps": self.case.steps,
            "expected": self.case.expect,
            "bounds": self.case.bounds,
            "represent": self.case.represent,
            "xfail": self.case.xfail,
            "passed": self.passed,
            "status": self.status,
            "agreement": f"{self.agreement}/{len(self.seeds)}",
            "seeds": [
                {
                    "seed": s.seed,
                    "verdict": s.verdict,
                    "agrees": s.agrees,
                    "failures": s.failures,
                    "seconds": round(s.seconds, 3),
                    "steps": s.steps,
                    "checks": [list(c) for c in s.checks],
                    "metrics": s.metrics,
                }
                for s in self.seeds
            ],
        }


# -------------------------------------------------------------------------------- the file
def load_cases(path: str | Path | None = None) -> list[Case]:
    """Parse and check a cases file (the built-in one when ``path`` is None)."""
    p = Path(path) if path is not None else builtin_cases_path()
    if not p.is_file():
        raise ConfigError(not_a_file("cases file", p))
    try:
        data = tomllib.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cases file {p} is not UTF-8 text (byte {exc.start}): not a TOML cases file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cases file {p} is not valid TOML: {exc}") from exc
    return parse_cases(data, str(p))


def parse_cases(data: dict, where: str = "cases") -> list[Case]:
    from .config import RunConfig

    unknown = sorted(set(data) - {"defaults", "case"})
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {unknown}; expected [defaults] and [[case]] tables")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{where}: [defaults] must be a table")
    bad = sorted(set(defaults) - DEFAULT_KEYS)
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {bad} in [defaults]; known: {', '.join(sorted(DEFAULT_KEYS))}")
    raw = data.get("case")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: no cases (add at least one [[case]] table)")
    cases, names = [], set()
    for i, c in enumerate(raw):
        label = f"{where}: case #{i + 1}" + (f" ({c.get('name')!r})" if isinstance(c, dict) and "name" in c else "")
        if not isinstance(c, dict):
            raise ConfigError(f"{label}: must be a table")
        bad = sorted(set(c) - CASE_KEYS)
        if bad:
            raise ConfigError(f"{label}: unknown key(s) {bad}; known: {', '.join(sorted(CASE_KEYS))}")
        for k in ("name", "method"):
            if not isinstance(c.get(k), str) or not c.get(k):
                raise ConfigError(f"{label}: {k!r} (a non-empty string) is required")
        if c["name"] in names:
            raise ConfigError(f"{label}: duplicate case name")
        names.add(c["name"])
        merged = {**defaults, **c}
        merged["options"] = {**defaults.get("options", {}), **c.get("options", {})}
        merged["config"] = {**defaults.get("config", {}), **c.get("config", {})}
        case = Case(**merged)
        _check_case(case, label)
        # config keys are checked by RunConfig itself (unknown keys, types) now, not mid-suite
        RunConfig.from_dict({**case.config, "method": case.method, "dataset": case.dataset})
        cases.append(case)
    return cases


def _check_case(c: Case, label: str) -> None:
    if c.expect is None and not c.bounds:
        raise ConfigError(f"{label}: give 'expect' (ok | dimensional | complete) and/or 'bounds'")
    exp = [c.expect] if isinstance(c.expect, str) else c.expect
    if c.expect is not None and (not isinstance(exp, list) or not exp or not set(exp) <= set(VERDICTS)):
        raise ConfigError(f"{label}: expect must be one of {', '.join(VERDICTS)} (or a list of them), got {c.expect!r}")
    if c.xfail is not None and (not isinstance(c.xfail, str) or not c.xfail.strip()):
        raise ConfigError(f"{label}: xfail must be a non-empty string saying why the case is known to disagree")
    if isinstance(c.steps, bool) or not isinstance(c.steps, int) or c.steps < 1:
        raise ConfigError(f"{label}: steps must be a positive integer, got {c.steps!r}")
    if isinstance(c.check_every, bool) or not isinstance(c.check_every, int) or c.check_every < 0:
        raise ConfigError(f"{label}: check_every must be an integer >= 0 (0: no early stop), got {c.check_every!r}")
    if isinstance(c.settle, bool) or not isinstance(c.settle, int) or c.settle < 1:
        raise ConfigError(f"{label}: settle must be a positive integer, got {c.settle!r}")
    if not isinstance(c.quick, bool):
        raise ConfigError(f"{label}: quick must be true or false, got {c.quick!r}")
    if (
        not isinstance(c.seeds, list)
        or not c.seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in c.seeds)
    ):
        raise ConfigError(f"{label}: seeds must be a non-empty list of integers, got {c.seeds!r}")
    if not isinstance(c.represent, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*", c.represent):
        raise ConfigError(
            f"{label}: represent must be 'backbone', the name of a head module or a dotted path "
            f"inside one (e.g. 'projector.net.5'), got {c.represent!r}"
        )
    if not isinstance(c.dataset, str):
        raise ConfigError(f"{label}: dataset must be a string")
    for k in ("options", "config", "bounds"):
        if not isinstance(getattr(c, k), dict):
            raise ConfigError(f"{label}: {k} must be a table")
    reserved = sorted({"method", "method_kwargs", "dataset", "seed", "evaluators", "epochs"} & set(c.config))
    if reserved:
        raise ConfigError(
            f"{label}: config may not set {reserved} (use the case's method/options/dataset/seeds/steps keys)"
        )
    for key, b in c.bounds.items():
        if key.count(".") != 1 or not all(key.split(".")):
            raise ConfigError(f"{label}: bound {key!r} must be 'evaluator.metric', e.g. 'rankme.rank'")
        if not isinstance(b, dict) or not b or set(b) - {"min", "max"}:
            raise ConfigError(f"{label}: bound {key!r} must be a table with 'min' and/or 'max'")
        for v in b.values():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{label}: bound {key!r} limits must be numbers, got {v!r}")


# -------------------------------------------------------------------------------- running
def case_config(case: Case, seed: int, n_train: int) -> RunConfig:
    """The RunConfig of one case x seed: the step budget becomes whole epochs."""
    from .config import RunConfig

    # tiny models: one thread is the fastest (and leaves the other cores to other jobs); fp32 so a
    # verdict does not depend on whether the CPU has bf16 arithmetic (a case's config may override)
    d = {
        "preset": "smoke",
        "progress": False,
        "device": "cpu",
        "log_every": 10**9,
        "num_threads": 1,
        "precision": "fp32",
        **case.config,
        "method": case.method,
        "method_kwargs": dict(case.options),
        "dataset": case.dataset,
        "seed": seed,
        "evaluators": case.evaluators,
    }
    cfg = RunConfig.from_dict(d).with_preset()
    assert cfg.batch_size is not None  # every preset sets it
    n = min(n_train, cfg.train_subset or n_train)
    per_epoch = n // cfg.batch_size
    if per_epoch < 1:
        raise ConfigError(f"case {case.name!r}: batch_size {cfg.batch_size} is larger than the training set ({n})")
    return dataclasses.replace(cfg, epochs=math.ceil(case.steps / per_epoch))


def judge(case: Case, metrics: dict[str, float]) -> tuple[str, list[str]]:
    got = verdict(metrics["collapse.verdict_code"])
    failures = []
    if case.expected and got not in case.expected:
        failures.append(f"verdict {got} != expected {' or '.join(case.expected)}")
    for key, b in case.bounds.items():
        if key not in metrics:
            failures.append(f"{key} was not computed (metrics: {', '.join(sorted(metrics))})")
            continue
        v = metrics[key]
        if "min" in b and not v >= b["min"]:
            failures.append(f"{key}={v:.4g} < min {b['min']}")
        if "max" in b and not v <= b["max"]:
            failures.append(f"{key}={v:.4g} > max {b['max']}")
    return got, failures


def run_case_seed(
    case: Case, seed: int, workdir: Path, data_cache: dict | None = None, early_stop: bool = True
) -> SeedResult:
    """Train and judge one case x seed. Checkpoints are written after the last epoch only. A case
    that :attr:`Case.stops_early` is judged every ``check_every`` steps during training (the
    verdicts are kept in ``checks``); with ``early_stop`` it stops once ``settle`` checks in a row
    gave the same agreeing verdict, else it trains the whole budget (the checks are then only
    recorded)."""
    from .build import load_data, resolve_device
    from .embeddings import checkpoint_embeddings, eval_split
    from .pipeline import run_evaluators
    from .trainer import train

    t0 = time.perf_counter()
    data_cache = {} if data_cache is None else data_cache
    probe = case_config(case, seed, 10**12)
    key = (probe.dataset, repr(sorted(probe.dataset_kwargs.items())), probe.data_root)
    if key not in data_cache:
        data_cache[key] = load_data(probe)
    data = data_cache[key]
    cfg = case_config(case, seed, len(data.x_train))
    assert cfg.batch_size is not None and cfg.epochs is not None  # case_config resolved the preset
    per_epoch = min(len(data.x_train), cfg.train_subset or len(data.x_train)) // cfg.batch_size  # as the trainer
    checks: list[tuple[int, str]] = []
    stop = None
    if case.stops_early:
        every = max(1, round(case.check_every / per_epoch))  # in epochs
        agreed = [0]  # agreeing checks in a row with the same verdict

        def stop(epoch: int, method: Method) -> bool:
            if epoch % every:
                return False
            got, fails = judge(case, live_metrics(case, cfg, data, method))
            same = bool(checks) and checks[-1][1] == got
            checks.append((epoch * per_epoch, got))
            agreed[0] = 0 if fails else agreed[0] + 1 if same else 1
            return early_stop and agreed[0] >= case.settle

    res = train(cfg, workdir / case.name, data=data, checkpoint_every=cfg.epochs, stop=stop)
    if case.represent == "backbone":
        emb, cfg, _meta, _, _method = checkpoint_embeddings(
            res.checkpoint, eval_split(cfg, data), resolve_device(cfg.device)
        )
    else:
        emb = head_embeddings(cfg, data, res.run_dir, case.represent)
    metrics = {}
    for ev, (m, _secs) in run_evaluators(emb, case.evaluators, cfg.eval_kwargs).items():
        metrics.update({f"{ev}.{k}": float(v) for k, v in m.items()})
    got, failures = judge(case, metrics)
    return SeedResult(seed, got, metrics, failures, time.perf_counter() - t0, res.epochs * per_epoch, checks)


def live_metrics(case: Case, cfg: RunConfig, data: Data, method: Method) -> dict[str, float]:
    """The ``collapse`` metrics of what the case judges, from the method as it is now (eval mode,
    as the final judgement sees its checkpoint); the random number generators are left as found,
    so a checked run trains exactly as an unchecked one."""
    import numpy as np
    import torch

    from .build import resolve_device
    from .embeddings import embed_data, eval_split, layer_encoder
    from .pipeline import run_evaluators
    from .precision import resolve_precision

    np_state = np.random.get_state()
    was_training = method.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            method.eval()
            split, device = eval_split(cfg, data), resolve_device(cfg.device)
            prec = resolve_precision(cfg.precision, device)
            if case.represent == "backbone":
                with method.evaluated_as_backbone():  # the checkpoint keeps the EMA target as the backbone
                    emb = embed_data(layer_encoder(method), split, device, precision=prec)
            else:
                emb = _head_embed(method, case.represent, split, device, "live", cfg.method)
            ((m, _secs),) = run_evaluators(emb, ["collapse"], cfg.eval_kwargs).values()
    finally:
        method.train(was_training)
        np.random.set_state(np_state)
    return {f"collapse.{k}": float(v) for k, v in m.items()}


def head_embeddings(cfg: RunConfig, data: Data, run_dir: Path, head: str) -> Embeddings:
    """Embeddings of ``method.<head>(method.backbone(x))`` from the run's full training state
    (``checkpoints/resume.pt``): the output the loss sees, e.g. ``projector``. A dotted path
    (``projector.net.5``) runs the same forward and takes the output of that sub-module of the
    head, e.g. a projection before its output normalisation."""
    from .build import build_method, data_spec, resolve_device, train_split
    from .checkpoint import load_resume
    from .embeddings import eval_split

    method = build_method(cfg, data_spec(train_split(cfg, data)))
    method.load_state_dict(load_resume(Path(run_dir) / "checkpoints" / "resume.pt")["method"])
    method.eval()
    return _head_embed(method, head, eval_split(cfg, data), resolve_device(cfg.device), f"{run_dir}:{head}", cfg.method)


def _head_embed(method: Method, head: str, data: Data, device: torch.device, source: str, name: str = "") -> Embeddings:
    """Embeddings of ``method.<head>(method.backbone(x))``, or of a sub-module inside the head."""
    from .embeddings import embed_data

    top, _, inner = head.partition(".")
    module = getattr(method, top, None)
    if not callable(module):
        raise ConfigError(
            f"method {name or type(method).__name__!r} has no head module {top!r} to represent "
            f"(use 'backbone' or one of its sub-modules: "
            f"{', '.join(n for n, _ in method.named_children())})"
        )
    try:
        target = module.get_submodule(inner) if inner else module
    except AttributeError:
        names = ", ".join(f"{top}.{n}" for n, _ in module.named_modules() if n)
        raise ConfigError(
            f"head {top!r} of method {name or type(method).__name__!r} has no sub-module {inner!r} (known: {names})"
        ) from None
    captured: list = []
    hook = target.register_forward_hook(lambda _m, _inp, out: captured.append(out))

    def embed(x: torch.Tensor) -> torch.Tensor:
        captured.clear()
        out = module(method.backbone(x))
        return captured[-1] if inner else out

    try:
        return embed_data(embed, data, device, source=source)
    finally:
        hook.remove()


_WORKER_DATA: dict = {}


def _worker(case: Case, seed: int, workdir: str, early_stop: bool = True) -> SeedResult:
    return run_case_seed(case, seed, Path(workdir), _WORKER_DATA, early_stop)


def usable_cores() -> int:
    """Cores this process may use: the CPU affinity mask, capped by a cgroup CPU quota (v2
    ``cpu.max`` or v1 ``cfs_quota_us / cfs_period_us``) where one is set; at least 1."""
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = None
    try:
        q_text, p_text = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if q_text != "max":
            quota = int(q_text) / int(p_text)
    except (OSError, ValueError):
        try:
            q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            quota = q / p if q > 0 and p > 0 else None
        except (OSError, ValueError):
            pass
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def quick_cases(cases: list[Case]) -> list[Case]:
    """The PR-sized check: the cases marked ``quick`` (every case when none is), each on its
    first seed only."""
    chosen = [c for c in cases if c.quick] or list(cases)
    return [dataclasses.replace(c, seeds=c.seeds[:1]) for c in chosen]


def _log_line(c: Case, s: int, r: SeedResult) -> str:
    stopped = f", stopped at step {r.steps} of {c.steps}" if r.steps and r.steps < c.steps else ""
    return (
        f"[{c.name} seed {s}] {r.verdict} ({'agrees' if r.agrees else '; '.join(r.failures)}) "
        f"in {r.seconds:.1f}s{stopped}"
    )


def run_suite(
    cases: list[Case],
    seeds: list[int] | None = None,
    workdir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    jobs: int = 1,
    early_stop: bool = True,
) -> list[CaseResult]:
    """Run every case x seed (``seeds`` overrides the cases' own); runs go to a temporary
    directory unless ``workdir`` is given (then they are kept there). ``jobs > 1`` runs the
    case x seed pairs in that many worker processes (one thread each); plugins must then be
    importable in a fresh interpreter (installed, or registered through an entry point).
    ``early_stop=False`` trains every case for its whole step budget (see :attr:`Case.stops_early`)."""
    if jobs > 1:
        return _run_parallel(cases, seeds, workdir, log, jobs, early_stop)
    import torch

    threads = torch.get_num_threads()  # the trainer sets the configured count: restore it after
    tmp = None
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="ssl-bench-collapse-")
        workdir = tmp
    try:
        data_cache: dict = {}
        results = []
        for case in cases:
            out = []
            for seed in seeds if seeds is not None else case.seeds:
                r = run_case_seed(case, seed, Path(workdir), data_cache, early_stop)
                if log:
                    log(_log_line(case, seed, r))
                out.append(r)
            results.append(CaseResult(case, out))
        return results
    finally:
        torch.set_num_threads(threads)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _run_parallel(
    cases: list[Case],
    seeds: list[int] | None,
    workdir: str | Path | None,
    log: Callable[[str], None] | None,
    jobs: int,
    early_stop: bool = True,
) -> list[CaseResult]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    tmp = None
    if workdir is None:
        tmp = workdir = tempfile.mkdtemp(prefix="ssl-bench-collapse-")
    try:
        tasks = [(c, s) for c in cases for s in (seeds if seeds is not None else c.seeds)]
        # the longest first, so that no worker is left with a long case at the end
        order = sorted(range(len(tasks)), key=lambda i: -tasks[i][0].steps)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            index = {pool.submit(_worker, *tasks[i], str(workdir), early_stop): i for i in order}
            got: dict[int, SeedResult] = {}
            for fut in as_completed(index):  # logged as they finish
                i = index[fut]
                got[i] = fut.result()
                if log:
                    log(_log_line(*tasks[i], got[i]))
        return [CaseResult(c, [got[i] for i in range(len(tasks)) if tasks[i][0] is c]) for c in cases]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# -------------------------------------------------------------------------------- output
def _fmt(v: float) -> str:
    if v != v:
        return "nan"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.3e}"


def _metric_range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return _fmt(lo) if _fmt(lo) == _fmt(hi) else f"{_fmt(lo)}..{_fmt(hi)}"


def format_table(results: list[CaseResult]) -> str:
    """One row per case: expected, verdicts per seed, agreement, the range over seeds of the key
    metrics (and of every bounded metric), PASS/FAIL."""
    rows = [
        ("case", "expected", "got (per seed)", "agree", "key metrics of the judged output (min..max over seeds)", "")
    ]
    for r in results:
        keys = list(KEY_METRICS) + [k for k in r.case.bounds if k not in KEY_METRICS]
        metrics = []
        for k in keys:
            vals = [s.metrics[k] for s in r.seeds if k in s.metrics]
            if vals:
                short = k.split(".", 1)[1] if k.startswith("collapse.") else k
                metrics.append(f"{short}={_metric_range(vals)}")
        expected = "|".join(r.case.expected) or "-"
        if r.case.bounds:
            expected += " +bounds"
        got = ",".join(s.verdict if s.agrees else s.verdict.upper() + "!" for s in r.seeds)
        rows.append((r.case.name, expected, got, f"{r.agreement}/{len(r.seeds)}", " ".join(metrics), r.status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    fails = [(r.case.name, s) for r in results for s in r.seeds if not s.agrees]
    for name, s in fails:
        lines.append(f"  {name} seed {s.seed}: " + "; ".join(s.failures))
    for r in results:
        if r.case.xfail:
            lines.append(f"  {r.case.name} is a known disagreement (xfail): {r.case.xfail}")
    n_ok = sum(r.passed for r in results)
    bad = [r.case.name for r in results if not r.ok]
    lines.append(
        f"{n_ok}/{len(results)} cases agree on every seed; "
        + (f"suite FAILS: {', '.join(bad)}" if bad else "suite passes")
    )
    return "\n".join(lines)
