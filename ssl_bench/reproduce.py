"""Reproduction check: do a run's rows agree with a committed reference board?

A reference board is a leaderboard CSV (``ssl-bench leaderboard`` output) with n >= 2 seeds per
row. The boards committed under ``leaderboards/`` ship with the package (``ssl_bench.leaderboards``),
so the check works after ``pip install``. A run row is compared with the reference row of the same
label, backbone, preset and epochs; it is *inside* when its mean lies within the reference's
95 % Student-t prediction interval, mean ± t_{0.975, n-1} · s · √(1/m + 1/n) for the mean of the
run's m seeds (one seed: t·s·√(1 + 1/n)). About 1 row in 20 falls outside by chance alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .stats import CONFIDENCE, prediction_half_width

#: The metrics the check reports, with the names it prints.
METRICS = {"knn_top1": "k-NN top1", "linear_top1": "linear top1"}
MATCH = ["label", "backbone", "preset", "epochs"]
#: Boards store 4 decimals (``ssl-bench leaderboard``): a difference within that rounding is no difference.
ROUNDING = 1e-4


def reference_dir() -> Path | None:
    """The folder of the committed reference boards: the installed ``ssl_bench.leaderboards``
    package data, else ``leaderboards/`` of a source checkout; None when neither exists."""
    try:
        from importlib.resources import files

        path = Path(str(files("ssl_bench.leaderboards")))
        if path.is_dir() and any(path.glob("*.csv")):
            return path
    except (ImportError, TypeError):  # not installed as a package (an old editable install)
        pass
    src = Path(__file__).resolve().parent.parent / "leaderboards"
    return src if src.is_dir() else None


def reference_boards(folder: Path, dataset: str) -> list[Path]:
    """The board CSVs of ``dataset`` in ``folder``: ``<dataset>.csv`` and ``<dataset>-*.csv``."""
    return sorted(p for p in Path(folder).glob("*.csv") if p.stem == dataset or p.stem.startswith(dataset + "-"))


def load_reference(paths: list[Path]) -> pd.DataFrame:
    """One row per (label, backbone, preset, epochs) with n >= 2, from the board with most seeds;
    ``board`` names the file it came from."""
    frames = []
    for p in paths:
        try:
            df = pd.read_csv(p)
        except (OSError, ValueError, pd.errors.ParserError):
            continue  # not a board (a damaged or foreign CSV): no reference from it
        if not {"label", "backbone", "n"} <= set(df.columns):
            continue
        keep = [c for c in df.columns if c in MATCH or c == "n" or c.split("_")[-1] in ("mean", "std", "n")]
        frames.append(pd.DataFrame({**{c: df[c] for c in keep}, "board": p.name}))
    if not frames:
        return pd.DataFrame(columns=MATCH + ["n", "board"])
    ref = pd.concat(frames, ignore_index=True)
    ref = ref[pd.to_numeric(ref["n"], errors="coerce") >= 2]
    on = [c for c in MATCH if c in ref.columns]
    ref = ref.sort_values("n", ascending=False, kind="stable").drop_duplicates(on, keep="first")
    return ref.reset_index(drop=True)


@dataclass
class Check:
    """The outcome per metric: rows compared, rows inside, and the rows outside."""

    boards: list[str] = field(default_factory=list)
    compared: dict[str, int] = field(default_factory=dict)
    inside: dict[str, int] = field(default_factory=dict)
    outside: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "boards": self.boards,
            "confidence": CONFIDENCE,
            "metrics": {m: {"compared": self.compared[m], "inside": self.inside[m]} for m in self.compared},
            "outside": self.outside,
            "unmatched": self.unmatched,
        }


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v


def _backbone_names(table: pd.DataFrame) -> list[str]:
    """The registered backbone name of each row of an aggregated table: ``vit-mini (w96 d4, ...)``
    and a row of ijepa or mae that says ``timm:vit_tiny_patch16_224`` (a table written before
    vit-mini had a name) both give ``vit-mini``, so a run's table matches the board's either way."""
    from .backbones import label_name, real_backbone_name

    return [
        real_backbone_name(str(lab).split(" ")[0], label_name(str(bb)), None)
        for lab, bb in zip(table["label"], table["backbone"], strict=True)
    ]


def check(run: pd.DataFrame, reference: pd.DataFrame, metrics: list[str] | None = None) -> Check:
    """Compare each row of the aggregated ``run`` table with its ``reference`` row (see the module)."""
    metrics = metrics or list(METRICS)
    out = Check(boards=sorted(set(reference["board"])) if "board" in reference else [])
    if run.empty:
        return out
    want = [f"{m}_{s}" for m in metrics for s in ("mean", "std", "n")]
    on = [c for c in MATCH if c in run.columns and c in reference.columns]  # label and backbone at least
    run = run[[c for c in on + ["n"] + want if c in run.columns]].copy()
    reference = reference[[c for c in on + ["n", "board"] + want if c in reference.columns]].copy()
    if "epochs" in on:
        run["epochs"], reference["epochs"] = run["epochs"].astype(int), reference["epochs"].astype(int)
    if "backbone" in on:  # a table's label of the backbone, and the names rows had before it had one
        run["backbone"], reference["backbone"] = _backbone_names(run), _backbone_names(reference)
    both = run.merge(reference, on=on, how="left", suffixes=("", "_ref"), indicator=True)
    out.unmatched = [str(r["label"]) for _, r in both.iterrows() if r["_merge"] == "left_only"]
    if "board" in both:  # the boards that hold a row of this run, not every board of the dataset
        out.boards = sorted({str(b) for b in both.loc[both["_merge"] == "both", "board"]})
    for m in metrics:
        out.compared[m], out.inside[m] = 0, 0
        for _, r in both[both["_merge"] == "both"].iterrows():
            v, mean = _num(r.get(f"{m}_mean")), _num(r.get(f"{m}_mean_ref"))
            sd, n = _num(r.get(f"{m}_std_ref")), _num(r.get(f"{m}_n_ref", r.get("n_ref")))
            k = _num(r.get(f"{m}_n", r.get("n")))
            k = int(k) if math.isfinite(k) and k >= 1 else 1
            if not all(math.isfinite(x) for x in (v, mean, sd, n)) or n < 2:
                continue
            half = prediction_half_width(sd, int(n), k)
            out.compared[m] += 1
            if abs(v - mean) <= half + ROUNDING:
                out.inside[m] += 1
            else:
                out.outside.append(
                    {"label": str(r["label"]), "backbone": str(r["backbone"]), "metric": m, "run": v,
                     "reference_mean": mean, "half_width": half, "reference_n": int(n), "board": str(r["board"])}
                )  # fmt: skip
    return out


def run_check(table: pd.DataFrame, dataset: str, folder: Path | None) -> Check | None:
    """The check of an aggregated ``table`` of ``dataset`` against the boards in ``folder``; None
    when no board of that dataset has a row of the same configuration to compare with."""
    if folder is None:
        return None
    ref = load_reference(reference_boards(folder, dataset))
    if ref.empty:
        return None
    res = check(table, ref)
    return res if sum(res.compared.values()) else None


def format_check(res: Check) -> list[str]:
    """Short lines: per metric how many rows lie inside, then one line per row outside."""
    pct = f"{CONFIDENCE:.0%}"
    lines = [f"reproduction check against {', '.join(res.boards)} ({pct} prediction interval for one new run):"]
    for m, n in res.compared.items():
        lines.append(f"  {METRICS.get(m, m)}: {res.inside[m]} of {n} rows inside")
    for o in res.outside:
        lines.append(
            f"  outside: {o['label']} ({o['backbone']}) {METRICS.get(o['metric'], o['metric'])} {o['run']:.2f}, "
            f"reference {o['reference_mean']:.2f} ± {o['half_width']:.2f} (n={o['reference_n']}, {o['board']})"
        )
    if res.unmatched:
        lines.append(f"  not on the reference boards: {', '.join(res.unmatched)}"[:200])
    return lines
