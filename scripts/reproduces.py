"""Does a one-seed run reproduce a committed board? For each row (label + backbone) of both
tables and each metric, whether the run's value lies inside the board's 95 % interval
(mean ± ci95, n ≥ 2 seeds).

    python scripts/reproduces.py leaderboards/fashion-mnist.csv leaderboards/fashion-mnist-cpu-seed0.csv

Prints one line per row and metric, then per metric how many rows are inside; exit status 0
either way (a report, not a verdict).
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd


def compare(board: pd.DataFrame, run: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    key = ["label", "backbone"]
    both = board.merge(run, on=key, suffixes=("_board", "_run"))
    out = []
    for _, r in both.iterrows():
        for m in metrics:
            mean, ci, n = r[f"{m}_mean_board"], r[f"{m}_ci95_board"], r.get("n_board", float("nan"))
            v = r[f"{m}_mean_run"]
            if any(isinstance(x, float) and math.isnan(x) for x in (mean, v)):
                continue
            ci = 0.0 if isinstance(ci, float) and math.isnan(ci) else float(ci)
            out.append({"label": r["label"], "backbone": r["backbone"], "metric": m, "board_n": n,
                        "board_mean": float(mean), "board_ci95": ci, "run": float(v),
                        "inside": abs(float(v) - float(mean)) <= ci})
    return pd.DataFrame(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("board", help="the board's CSV (n >= 2 seeds per row)")
    p.add_argument("run", help="the run's CSV (as `ssl-bench run` writes it)")
    p.add_argument("--metrics", default="knn_top1,linear_top1")
    a = p.parse_args(argv)
    res = compare(pd.read_csv(a.board), pd.read_csv(a.run), a.metrics.split(","))
    if res.empty:
        print("no row in common", file=sys.stderr)
        return 0
    for _, r in res.iterrows():
        mark = "inside " if r["inside"] else "OUTSIDE"
        print(f"{mark} {r['metric']:<12} {r['label']:<40} {r['backbone']:<28} run {r['run']:6.2f}  "
              f"board {r['board_mean']:6.2f} ± {r['board_ci95']:.2f} (n={r['board_n']})")
    for m, g in res.groupby("metric", sort=False):
        print(f"{m}: {int(g['inside'].sum())} of {len(g)} rows inside the board's 95 % interval")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
