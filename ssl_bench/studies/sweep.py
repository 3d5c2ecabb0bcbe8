"""Shared by the studies that train: one configuration = one :func:`ssl_bench.pipeline.run_sweep`
call into its own runs folder, and its result rows read back as {evaluator.metric: value}."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only when a study runs, not by `ssl-bench --help`
    from ..config import RunConfig
    from ..data import Data


def train_config(
    base: RunConfig,
    method: str,
    opts: dict,
    seed: int,
    out: Path,
    data: Data,
    log: Callable[[str], None] | None = None,
    with_checkpoint: bool = False,
) -> dict:
    """Train (or resume) ``method`` with options ``opts`` and seed ``seed`` under ``out`` through
    the sweep, and return the evaluated metrics of that run (``"knn.top1"`` ...). A run that
    diverged or failed gives ``{"status": <why>}``. ``with_checkpoint``: the evaluated checkpoint's
    path under ``"checkpoint"`` too."""
    from ..pipeline import run_sweep

    cfg = dataclasses.replace(base, method=method, method_kwargs={**base.method_kwargs, **opts})
    rows = finished_rows(dataclasses.replace(cfg, seed=seed), out, data.kind)
    if rows is None:
        rows, failures = run_sweep(
            [method], cfg, [seed], out, baselines=False, log=log or (lambda m: None), return_failures=True, data=data
        )
        if failures:
            return {"status": failures[0]["status"]}
    out_m: dict = metrics_of(rows)
    if with_checkpoint:
        out_m["checkpoint"] = next(r["checkpoint"] for r in rows if r.get("checkpoint"))
    return out_m


def finished_rows(cfg: RunConfig, out: Path, kind: str) -> list[dict] | None:
    """The result rows of a run that is already trained to its last epoch and evaluated by every
    evaluator of ``cfg`` (the latest row of each metric), or None: a study run again rereads them
    instead of evaluating the same checkpoint again (the sweep would append a second copy)."""
    from ..registry import EVALUATORS
    from ..results import read_rows
    from ..trainer import run_dir_for

    path = run_dir_for(cfg, out, kind) / "results.jsonl"
    if not path.is_file():
        return None
    epochs = cfg.with_preset().epochs
    latest: dict[tuple[str, str], dict] = {}
    for r in read_rows([path]):
        if r.get("status", "ok") == "ok" and r.get("epochs") == epochs and r.get("checkpoint"):
            latest[(r["evaluator"], r["metric"])] = r
    have = {ev for ev, _ in latest}
    if not set(EVALUATORS.resolve(cfg.evaluators)) <= have:
        return None
    if not all(Path(r["checkpoint"]).is_file() for r in latest.values()):
        return None
    return list(latest.values())


def metrics_of(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        if r.get("status", "ok") == "ok" and r.get("value") is not None:
            out[f"{r['evaluator']}.{r['metric']}"] = float(r["value"])
    return out


def mean_std(values: list[float | None]) -> tuple[float, float]:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return float("nan"), float("nan")
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else float("nan")
    return m, s


def run_dir(out: Path, cfg: RunConfig, kind: str) -> Path:
    from ..trainer import run_dir_for

    return run_dir_for(cfg, out, kind)
