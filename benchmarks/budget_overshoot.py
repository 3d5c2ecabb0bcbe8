"""How well time-budgeted runs kept their budget: one line per run found under RUNS_DIR (at any depth).

    .venv/bin/python benchmarks/budget_overshoot.py runs/board/fashion-mnist-speedrun-cpu

Reads the last checkpoint's metadata of each budgeted run (``checkpoints/epoch_*.json``): the
budget, the run's training seconds (the throughput probe plus the training steps; the k-NN monitor
and the checkpoint writes are not counted, see ssl_bench.budget), the overshoot (seconds and % of
the budget), the steps reached, the probe's seconds and its seconds per step, and the seconds per
step the run actually had. Unfinished runs (last epoch < epochs) are listed as such and left out of
the summary line.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def last_meta(run: Path) -> dict | None:
    metas = sorted(run.glob("checkpoints/epoch_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    if not metas:
        return None
    try:
        return json.loads(metas[-1].read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_dir", type=Path)
    a = ap.parse_args(argv)
    over = []
    print(f"{'run':64} {'budget':>7} {'train s':>8} {'over s':>7} {'over %':>7} {'steps':>6} "
          f"{'probe s':>7} {'probe s/step':>12} {'run s/step':>10}  hardware")
    for run in sorted({p.parent.parent for p in a.runs_dir.rglob("checkpoints/epoch_*.json")}):  # any depth
        meta = last_meta(run)
        if not meta or not meta.get("budget"):
            continue
        b = meta["budget"]
        done = meta["epoch"] == meta["epochs"]
        secs, budget = float(meta["train_seconds"]), float(b["budget"])
        run_sps = (secs - b["probe_seconds"]) / max(int(meta["step"]), 1)
        tail = "" if done else f"  (unfinished: epoch {meta['epoch']}/{meta['epochs']})"
        pct = 100 * (secs - budget) / budget
        print(f"{run.name[:64]:64} {budget:7.1f} {secs:8.1f} {secs - budget:7.1f} {pct:7.1f} "
              f"{meta['step']:6d} {b['probe_seconds']:7.1f} {b['seconds_per_step']:12.3f} {run_sps:10.3f}  "
              f"{meta.get('hardware', '?')}{tail}")
        if done:
            over.append(100 * (secs - budget) / budget)
    if over:
        print(f"{len(over)} finished runs: overshoot median {statistics.median(over):+.1f} %, "
              f"min {min(over):+.1f} %, max {max(over):+.1f} % of the budget")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
