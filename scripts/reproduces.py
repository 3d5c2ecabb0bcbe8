"""Does a run reproduce a committed board? For each row of the run's table (label, backbone,
preset, epochs) that the board has with n >= 2 seeds, and each metric, whether the run's value
lies inside the board's 95 % prediction interval for a new run: mean ± t_{0.975, n-1} · s · √(1 + 1/n)
(√(1/m + 1/n) for the mean of m seeds), the interval for one new draw, not the interval of the
board's mean. The same check ends `ssl-bench run` (ssl_bench/reproduce.py).

    python scripts/reproduces.py leaderboards/fashion-mnist.csv leaderboards/fashion-mnist-cpu-seed0.csv

Prints per metric how many rows are inside, then the rows outside; exit status 0 either way (a
report, not a verdict: about 1 row in 20 lies outside by chance alone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ssl_bench.reproduce import check, format_check, load_reference


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("board", help="the board's CSV (n >= 2 seeds per row)")
    p.add_argument("run", help="the run's CSV (as `ssl-bench run` writes it)")
    p.add_argument("--metrics", default="knn_top1,linear_top1")
    a = p.parse_args(argv)
    res = check(pd.read_csv(a.run), load_reference([Path(a.board)]), a.metrics.split(","))
    if not sum(res.compared.values()):
        print("no row in common", file=sys.stderr)
        return 0
    print("\n".join(format_check(res)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
