"""``ssl-bench study rankme-selection``: Garrido, Balestriero, Najman & LeCun 2023, "RankMe:
Assessing the Downstream Performance of Pretrained Self-Supervised Representations by Their Rank".

The claim: picking hyperparameters by the effective rank of the embeddings (no label) loses
"nearly" nothing against picking them by a labelled validation score.

A grid of configurations per method (SimCLR temperature x learning rate, VICReg's three loss
weights, BYOL's target momentum tau x predictor learning-rate scale) is trained by the ordinary
sweep on a training pool carved from Fashion-MNIST's TRAINING set (the split of
``scripts/tune_val.py``, :func:`ssl_bench.data.validation_split`: 10,000 held-out training
images are the validation queries, the rest the pool). Each run is evaluated on that split (k-NN
on the validation queries, RankMe, LiDAR, alpha-ReQ: ``results.jsonl`` of the run) and, once, on
the test split (k-NN only: ``test-results.jsonl``). Per method the study picks

* by labels: the configuration with the best validation k-NN;
* without labels: the highest RankMe, the highest LiDAR, the alpha-ReQ closest to 1;

and reports the test k-NN of each pick, the regret (test k-NN of the label pick minus that of the
label-free pick: > 0 means the label-free pick lost), the best test k-NN of the grid (oracle) and
the Spearman correlation of each label-free score with test k-NN within the method.

``--budget default``: the ``quick`` preset (2 epochs, batch 128) on a 10,000-image training subset
of the pool (156 steps), k-NN memory bank 10,000 pool images, 5,000 validation and 5,000 test
queries; 4 configurations per method, 12 runs. ``tiny``: ``digits``, 2 configurations per method,
a few seconds each.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..console import logger
from .base import Study, command_line, register, runs_dir
from .common import fmt, image_study_config, save_figure, spearman, write_table
from .selection import SCORES, pick, score

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..data import Data

#: (method, options) per configuration; lr is a RunConfig key, the rest method options.
GRID: dict[str, list[dict]] = {
    "simclr": [dict(temperature=t, lr=lr) for t in (0.1, 0.5) for lr in (1e-3, 4e-3)],
    "vicreg": [
        dict(inv_weight=i, var_weight=v, cov_weight=c)
        for i, v, c in ((25.0, 25.0, 1.0), (25.0, 25.0, 0.1), (25.0, 5.0, 1.0), (5.0, 25.0, 1.0))
    ],
    # tau 0.99 starts at 0.936 on a 156-step run (ssl_bench.ema's short-run rule); 0.5 stays 0.5
    "byol": [dict(ema_tau=t, pred_lr_scale=p) for t in (0.5, 0.99) for p in (1.0, 10.0)],
}
TINY_GRID: dict[str, list[dict]] = {
    "simclr": [dict(temperature=0.1), dict(temperature=0.5)],
    "vicreg": [dict(), dict(var_weight=5.0)],
    "byol": [dict(pred_lr_scale=1.0), dict(pred_lr_scale=10.0)],
}
BY = ("rankme", "lidar", "alpha-req")
EVALUATORS = ["knn", "rankme", "lidar", "alpha-req"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--methods", default="simclr,vicreg,byol", help="subset of the grid's methods (default: simclr,vicreg,byol)"
    )
    p.add_argument("--seed", dest="study_seed", type=int, default=0, help="training seed of every run (default: 0)")


def _base(budget: str) -> RunConfig:
    return image_study_config(budget, EVALUATORS, tiny_eval_kwargs={"lidar": {"n_samples": 64, "n_views": 3}})


def _label(opts: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in opts.items()) or "defaults"


def knn_on_test(checkpoint: str, data: Data, results: Path) -> float:
    """k-NN top-1 of a checkpoint on the real test split; rows appended to ``results`` (read back
    from there when this checkpoint was evaluated before)."""
    from ..pipeline import evaluate_checkpoint
    from ..results import read_rows

    if results.is_file():
        done = [r for r in read_rows([results]) if r.get("checkpoint") == str(checkpoint) and r["metric"] == "top1"]
        if done:
            return float(done[-1]["value"])
    rows = evaluate_checkpoint(Path(checkpoint), ["knn"], device="cpu", data=data, results=results)
    return next(float(r["value"]) for r in rows if r["metric"] == "top1")


def run(a: argparse.Namespace) -> list[Path]:
    from ..build import load_data
    from ..data import validation_split
    from ..errors import ConfigError
    from .sweep import train_config

    grid = TINY_GRID if a.budget == "tiny" else GRID
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    bad = sorted(set(methods) - set(grid))
    if bad or not methods:
        raise ConfigError(f"--methods: the grid has {', '.join(grid)}; got {a.methods!r}")
    base = dataclasses.replace(_base(a.budget), seed=a.study_seed)
    full = load_data(base)
    val = validation_split(full, 300 if a.budget == "tiny" else 10_000)
    runs = runs_dir(a, "rankme-selection")
    t0 = time.perf_counter()
    configs = []
    for m in methods:
        for opts in grid[m]:
            opts = dict(opts)
            lr = opts.pop("lr", None)
            b = dataclasses.replace(base, lr=lr) if lr is not None else base
            res = train_config(b, m, opts, a.study_seed, runs, val, with_checkpoint=True)
            label = _label({**opts, **({"lr": lr} if lr is not None else {})})
            c = {"method": m, "config": label, "metrics": res}
            if "status" not in res:
                c["test_knn"] = knn_on_test(
                    res["checkpoint"], full, Path(res["checkpoint"]).parent.parent / "test-results.jsonl"
                )
            configs.append(c)
            logger.info(
                f"[rankme-selection] {m} {label}: val k-NN {fmt(res.get('knn.top1'))}, test k-NN "
                f"{fmt(c.get('test_knn'))}, RankMe {fmt(res.get('rankme.rank'))}, LiDAR "
                f"{fmt(res.get('lidar.lidar'))}, alpha {fmt(res.get('alpha-req.alpha'), 3)} "
                f"({time.perf_counter() - t0:.0f} s)",
            )
    config_rows = [
        {
            "method": c["method"],
            "config": c["config"],
            "val k-NN top1": c["metrics"].get("knn.top1"),
            "test k-NN top1": c.get("test_knn"),
            "RankMe": c["metrics"].get("rankme.rank"),
            "LiDAR": c["metrics"].get("lidar.lidar"),
            "alpha-ReQ": c["metrics"].get("alpha-req.alpha"),
            "status": c["metrics"].get("status", "ok"),
        }
        for c in configs
    ]
    summary = summarise(configs, methods)
    name = "rankme-selection" + ("-tiny" if a.budget == "tiny" else "")
    out = Path(a.out)
    cmd = command_line(a)
    intro = (
        f"{len(configs)} configurations over {len(methods)} methods, trained by the sweep on a pool carved "
        f"from {base.dataset}'s training set (validation queries: {len(val.y_test)} held-out training "
        f"examples), `{base.preset}` preset, train subset {base.train_subset}, seed {a.study_seed}. Per method: "
        f"the pick by validation k-NN (labels) and by RankMe, LiDAR and alpha-ReQ (closest to 1; no labels); "
        f"test k-NN of each pick; regret = test k-NN of the label pick - test k-NN of the label-free pick "
        f"(points; > 0: the label-free pick lost); oracle = the best test k-NN of the grid; Spearman "
        f"correlation of each score (alpha-ReQ: -|alpha - 1|) with test k-NN over the method's "
        f"configurations. Wall time {time.perf_counter() - t0:.0f} s. The configurations: "
        f"{name}-configs.md."
    )
    cols = ["method", "configs", "label pick", "label pick test k-NN", "oracle test k-NN"]
    for by in BY:
        cols += [f"{by} pick", f"{by} pick test k-NN", f"{by} regret", f"Spearman {by} vs test k-NN"]
    written = write_table(
        out,
        name,
        cols,
        summary,
        "RankMe model selection (Garrido et al. 2023)",
        intro,
        cmd,
        extra_md=f"![score vs test k-NN]({name}.png)",
    )
    written += write_table(
        out,
        f"{name}-configs",
        list(config_rows[0]),
        config_rows,
        "RankMe model selection: every configuration",
        "Validation split metrics (k-NN on "
        "held-out training images, RankMe, LiDAR, alpha-ReQ on the pool's embeddings) and "
        "the test k-NN of each configuration.",
        cmd,
    )
    written.append(figure(configs, methods, out / f"{name}.png"))
    return written


def summarise(configs: list[dict], methods: list[str]) -> list[dict]:
    rows: list[dict] = []
    for m in methods + ["all"]:
        cs = [c for c in configs if (m == "all" or c["method"] == m) and "test_knn" in c]
        if not cs:
            continue
        row: dict = {"method": m if m != "all" else "all (pooled; picks per method)", "configs": len(cs)}
        if m == "all":  # pooled correlations; picks and regrets: the mean over methods
            for by in BY:
                row[f"Spearman {by} vs test k-NN"] = spearman(
                    [score(by, c["metrics"]) for c in cs], [c["test_knn"] for c in cs]
                )
                regrets = [r[f"{by} regret"] for r in rows if isinstance(r.get(f"{by} regret"), float)]
                row[f"{by} regret"] = sum(regrets) / len(regrets) if regrets else float("nan")
            rows.append(row)
            continue
        cand = [{"metrics": c["metrics"], "c": c} for c in cs]
        best_val = max(cs, key=lambda c: c["metrics"].get("knn.top1", -math.inf))
        row["label pick"] = best_val["config"]
        row["label pick test k-NN"] = best_val["test_knn"]
        row["oracle test k-NN"] = max(c["test_knn"] for c in cs)
        for by in BY:
            p = pick(cand, by)
            if p is None:
                continue
            row[f"{by} pick"] = p["c"]["config"]
            row[f"{by} pick test k-NN"] = p["c"]["test_knn"]
            row[f"{by} regret"] = best_val["test_knn"] - p["c"]["test_knn"]
            row[f"Spearman {by} vs test k-NN"] = spearman(
                [score(by, c["metrics"]) for c in cs], [c["test_knn"] for c in cs]
            )
        rows.append(row)
    return rows


def figure(configs: list[dict], methods: list[str], path: Path) -> Path:
    from ..figures import _plt

    plt = _plt()
    fig, axes = plt.subplots(1, len(BY), figsize=(4.2 * len(BY), 3.6))
    for ax, by in zip(axes, BY, strict=True):
        for m in methods:
            cs = [c for c in configs if c["method"] == m and "test_knn" in c]
            xs = [score(by, c["metrics"]) for c in cs]
            ax.plot(xs, [c["test_knn"] for c in cs], "o", label=m, alpha=0.8)
        ev, metric, _ = SCORES[by]
        ax.set_xlabel(f"{by} ({'-|alpha - 1|' if by == 'alpha-req' else metric})")
        ax.set_ylabel("test k-NN top-1 %")
        ax.legend(fontsize=8)
    return save_figure(fig, path, "Label-free scores against test k-NN, one point per configuration")


register(
    Study(
        "rankme-selection",
        "Garrido et al. 2023: hyperparameters picked by RankMe / LiDAR / alpha-ReQ "
        "(no labels) vs by validation k-NN; regret and Spearman",
        __doc__ or "",
        add_arguments,
        run,
    )
)
