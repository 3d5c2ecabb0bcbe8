"""Which pairs of methods a board's robustness columns separate that its k-NN column ties.

Reads a board CSV (mean, std and n per metric, one line per method and backbone) and compares
every pair of trained methods of the same backbone with Welch's t-test: a pair is *tied* by a
metric when p >= 0.05. Prints the pairs that k-NN top-1 ties and a robustness metric separates,
and the pairs it separates the other way round. Usage (from the repository root):

    .venv/bin/python benchmarks/robustness_separation.py leaderboards/fashion-mnist.csv
    .venv/bin/python benchmarks/robustness_separation.py leaderboards/fashion-mnist.csv --metrics robustness_knn_corrupt
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys

import pandas as pd

from ssl_bench.stats import welch_p

REFERENCES = ("pixels", "random-init")


def pair_p(a: pd.Series, b: pd.Series, metric: str) -> float | None:
    """Welch's p of two rows' means of ``metric``; None where either lacks two seeds."""
    vals = [(r[f"{metric}_mean"], r[f"{metric}_std"], r[f"{metric}_n"]) for r in (a, b)]
    if any(pd.isna(m) or pd.isna(s) or pd.isna(n) or int(n) < 2 for m, s, n in vals):
        return None
    (m1, s1, n1), (m2, s2, n2) = vals
    return float(welch_p(float(m1), float(s1), int(n1), float(m2), float(s2), int(n2)))


def trained(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of trained methods (not the pixels or random-init references)."""
    return df[~df["label"].str.split(" ").str[0].isin(REFERENCES)]


def separations(df: pd.DataFrame, base: str, metrics: list[str], alpha: float = 0.05) -> list[dict]:
    """One dict per (pair, metric) where ``base`` and ``metric`` disagree on whether the pair differs
    (``separates``: the metric separates what ``base`` ties; else the other way round)."""
    out = []
    for _, group in trained(df).groupby("backbone"):
        for (_, a), (_, b) in itertools.combinations(group.iterrows(), 2):
            p_base = pair_p(a, b, base)
            if p_base is None:
                continue
            for m in metrics:
                p = pair_p(a, b, m)
                if p is None or (p_base < alpha) == (p < alpha):
                    continue
                hi, lo = (a, b) if a[f"{m}_mean"] >= b[f"{m}_mean"] else (b, a)
                out.append(
                    dict(
                        higher=hi["label"],
                        lower=lo["label"],
                        metric=m,
                        p=p,
                        base_p=p_base,
                        diff=hi[f"{m}_mean"] - lo[f"{m}_mean"],
                        base_diff=hi[f"{base}_mean"] - lo[f"{base}_mean"],
                        separates=p < alpha,
                    )
                )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--base", default="knn_top1")
    ap.add_argument("--metrics", default="robustness_knn_corrupt,robustness_linear_corrupt")
    args = ap.parse_args(argv)
    df = pd.read_csv(args.csv)
    metrics = [m for m in args.metrics.split(",") if m]
    missing = [m for m in [args.base, *metrics] if f"{m}_mean" not in df]
    if missing:
        print(f"{args.csv}: no column {missing[0]}_mean", file=sys.stderr)
        return 2
    found = separations(df, args.base, metrics)
    n_pairs = sum(math.comb(len(g), 2) for _, g in trained(df).groupby("backbone"))
    for sep in (True, False):
        part = [r for r in found if r["separates"] is sep]
        print(
            f"{'separated by' if sep else 'tied by'} a robustness metric, {'tied' if sep else 'separated'} by "
            f"{args.base}: {len(part)} (pair, metric) of {n_pairs} pairs x {len(metrics)} metrics"
        )
        for r in sorted(part, key=lambda r: (r["metric"], r["p"])):
            print(
                f"  {r['metric']}: {r['higher']} > {r['lower']} by {r['diff']:.2f} (p {r['p']:.3f}); "
                f"{args.base} {r['base_diff']:+.2f} (p {r['base_p']:.3f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
