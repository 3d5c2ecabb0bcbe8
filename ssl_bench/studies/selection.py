"""Label-free model selection: ``ssl-bench select --by rankme|lidar|alpha-req``.

RankMe (Garrido et al. 2023) and LiDAR (Thilak et al. 2024): the higher the better. alpha-ReQ
(Agrawal et al. 2022): the eigenspectrum decay closest to 1 is the best (the paper's finding), so
the configuration with the smallest ``|alpha - 1|`` is picked. None of them reads a label.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import ConfigError

#: --by name -> (evaluator, metric, how a value is scored: larger score = better).
SCORES = {
    "rankme": ("rankme", "rank", lambda v: v),
    "lidar": ("lidar", "lidar", lambda v: v),
    "alpha-req": ("alpha-req", "alpha", lambda v: -abs(v - 1.0)),
}
BASELINES = {"pixels", "random-init"}


def score(by: str, metrics: dict) -> float:
    """The selection score of one configuration's metrics ({"rankme.rank": ...}); NaN if absent."""
    ev, metric, fn = SCORES[by]
    v = metrics.get(f"{ev}.{metric}")
    return float(fn(v)) if v is not None and math.isfinite(v) else float("nan")


def pick(candidates: list[dict], by: str) -> dict | None:
    """The candidate (a dict with a ``metrics`` mapping) with the best ``by`` score; ties go to the
    first; None when no candidate has the score."""
    best, best_s = None, -math.inf
    for c in candidates:
        s = score(by, c["metrics"])
        if math.isfinite(s) and s > best_s:
            best, best_s = c, s
    return best


def _label(cfg: dict) -> str:
    kw = cfg.get("method_kwargs") or {}
    parts = [f"{k}={v}" for k, v in sorted(kw.items())]
    if cfg.get("lr") is not None:
        parts.append(f"lr={cfg['lr']}")
    return ", ".join(parts) or "defaults"


def select_runs(runs: Path, by: str, dataset: str | None = None) -> dict:
    """{method: {"picked": candidate, "candidates": [...]}} from the result rows under ``runs``.
    A candidate is one training configuration (``train_hash``; its seeds' values averaged)."""
    from ..results import find_result_files, read_rows

    if by not in SCORES:
        raise ConfigError(f"--by must be one of {', '.join(SCORES)}, got {by!r}")
    files = find_result_files(runs)
    if not files:
        raise ConfigError(f"no results.jsonl under {runs}: run a sweep first (ssl-bench run --out {runs})")
    groups: dict[tuple[str, str], dict] = {}
    for r in read_rows(files):
        if r.get("status", "ok") != "ok" or r.get("value") is None or r.get("method") in BASELINES:
            continue
        if dataset and r.get("dataset") != dataset:
            continue
        key = (r["method"], r.get("train_hash") or r.get("config_hash") or r["run_id"])
        g = groups.setdefault(
            key,
            {
                "method": r["method"],
                "dataset": r.get("dataset"),
                "config": _label(r.get("config") or {}),
                "train_hash": key[1],
                "runs": set(),
                "values": {},
            },
        )
        g["runs"].add(r["run_id"])
        g["values"].setdefault(f"{r['evaluator']}.{r['metric']}", {})[r["run_id"]] = float(r["value"])
    out: dict = {}
    for (method, _), g in sorted(groups.items()):
        metrics = {k: sum(v.values()) / len(v) for k, v in g["values"].items()}
        cand = {
            "config": g["config"],
            "train_hash": g["train_hash"],
            "dataset": g["dataset"],
            "runs": sorted(g["runs"]),
            "metrics": metrics,
            "score": score(by, metrics),
        }
        out.setdefault(method, {"candidates": []})["candidates"].append(cand)
    ev = SCORES[by][0]
    for d in out.values():
        d["picked"] = pick(d["candidates"], by)
        if d["picked"] is None:
            d["why"] = f"no configuration has {ev} rows (evaluate with --evaluators {ev})"
    return out


def format_selection(picks: dict, by: str) -> str:
    ev, metric, _ = SCORES[by]
    lines = []
    for method, d in picks.items():
        p = d["picked"]
        n = len(d["candidates"])
        if p is None:
            lines.append(f"{method}: {d['why']}")
            continue
        v = p["metrics"].get(f"{ev}.{metric}")
        knn = p["metrics"].get("knn.top1")
        lines.append(
            f"{method}: picked {p['config']} ({ev}.{metric} {v:.3f}"
            + (f", k-NN top1 {knn:.2f}" if knn is not None else "")
            + f") of {n} configuration(s); "
            f"runs: {', '.join(p['runs'])}"
        )
    return "\n".join(lines) if lines else "no SSL runs found"
