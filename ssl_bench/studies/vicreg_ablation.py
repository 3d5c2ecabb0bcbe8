"""``ssl-bench study vicreg-ablation``: Bardes, Ponce & LeCun 2022 (VICReg), the ablation of the
loss terms: invariance alone collapses, invariance + covariance collapses, invariance + variance
trains, and the full loss is best.

Each variant is VICReg with some of its three weights (``inv_weight`` lambda, ``var_weight`` mu,
``cov_weight`` nu) set to 0, trained through the ordinary sweep on Fashion-MNIST (``tiny``: the
``smoke`` preset on 512 digits), 3 seeds each, and
evaluated by k-NN, the linear probe, RankMe and the collapse diagnostics. ``default`` is the
``quick`` preset as ``ssl-bench run`` has it (2 epochs, batch 128, a 20,000-image training subset:
312 steps), evaluated on every train and test image. The collapse verdict is
given twice: on the backbone (what the evaluators see) and on the projector output, where the loss
acts and where the paper (and ``check-collapse``) judge collapse.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..console import logger
from .base import Study, command_line, register, runs_dir
from .common import image_study_config, parse_seeds, save_figure, write_table
from .sweep import mean_std, train_config

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..data import Data

#: (label, method options, the paper's result for the row). The paper's column is quoted from its
#: ablation of the loss terms (ImageNet, linear top-1 %, 100 epochs): "collapse" or an accuracy.
VARIANTS: list[tuple[str, dict, str]] = [
    ("Inv", dict(var_weight=0.0, cov_weight=0.0), "collapse"),
    ("Inv + Var", dict(cov_weight=0.0), "57.5"),
    ("Inv + Cov (lambda 25, nu 1)", dict(var_weight=0.0), "collapse"),
    ("Inv + Cov (lambda 1, nu 25)", dict(inv_weight=1.0, var_weight=0.0, cov_weight=25.0), "collapse"),
    ("Inv + Var + Cov (VICReg)", dict(), "68.6"),
]
EVALUATORS = ["knn", "linear", "rankme", "collapse"]
VERDICT = {0: "ok", 1: "dimensional", 2: "complete"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", default="0,1,2", help="seeds, a list or range: 0,1,2 or 0-2 (default: 0,1,2)")
    p.add_argument("--dataset", default=None, help="default: fashion-mnist (tiny: digits)")


def _base(budget: str, dataset: str | None) -> RunConfig:
    return image_study_config(budget, EVALUATORS, dataset, whole_quick=True)


def reference_rows(base: RunConfig, data: Data, out: Path, seed: int) -> list[dict]:
    """The untrained backbone (random-init) and the raw pixels at the same evaluation budget (seed
    ``seed``): an SSL row means something only next to them (the sweep's baselines; read back when
    already evaluated)."""
    from ..pipeline import evaluate_baselines
    from ..results import read_rows

    cfg = dataclasses.replace(base, method="vicreg", seed=seed)
    found = sorted(out.glob(f"{cfg.dataset}-pixels-*-s{seed}/results.jsonl")) + sorted(
        out.glob(f"{cfg.dataset}-random-init-*-s{seed}/results.jsonl")
    )
    rows = read_rows(found) if len(found) == 2 else evaluate_baselines(cfg, out, data, EVALUATORS, ["vicreg"])
    refs = []
    for name in ("random-init", "pixels"):
        m = {f"{r['evaluator']}.{r['metric']}": r["value"] for r in rows if r["method"] == name}
        code = m.get("collapse.verdict_code")
        refs.append(
            {
                "variant": f"_{name}_ (reference, seed {seed})",
                "seeds": 1,
                "k-NN top1": m.get("knn.top1"),
                "linear top1": m.get("linear.top1"),
                "RankMe": m.get("rankme.rank"),
                "backbone verdict": VERDICT.get(int(code)) if code is not None else None,
                "backbone std·√d": m.get("collapse.std_ratio"),
            }
        )
    return refs


def projector_verdict(cfg: RunConfig, data: Data, out: Path) -> tuple[str, float]:
    """(verdict, std_ratio) of the projector output of the trained run.

    Kept in the run folder (``projector-verdict.json``), keyed by the training state it was read
    from and the number of training images embedded, so that a second call of the study, which
    rereads finished runs, does not embed every training image through the projector again."""
    from ..checkpoint import atomic_write_text
    from ..collapse import head_embeddings
    from ..evaluators.collapse import collapse_report
    from .sweep import run_dir

    cfg = cfg.with_preset()
    rd = run_dir(out, cfg, data.kind)
    state = (rd / "checkpoints" / "resume.pt").stat()
    key = {
        "resume_size": state.st_size,
        "resume_mtime_ns": state.st_mtime_ns,
        "eval_train_subset": cfg.eval_train_subset,
        "n_train": len(data.x_train),
    }
    cache = rd / "projector-verdict.json"
    try:
        seen = json.loads(cache.read_text())
        if seen.get("key") == key:
            return str(seen["verdict"]), float(seen["std_ratio"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # absent or unreadable: compute it again
    emb = head_embeddings(cfg, data, rd, "projector")
    m = collapse_report(emb.train_x, max_samples=5000).metrics
    verdict, ratio = VERDICT[int(m["verdict_code"])], float(m["std_ratio"])
    atomic_write_text(cache, json.dumps({"key": key, "verdict": verdict, "std_ratio": ratio}) + "\n")
    return verdict, ratio


def run(a: argparse.Namespace) -> list[Path]:
    from ..build import load_data

    seeds = parse_seeds(a.seeds)
    base = _base(a.budget, a.dataset)
    data = load_data(base)
    runs = runs_dir(a, "vicreg-ablation")
    rows = []
    t0 = time.perf_counter()
    for label, opts, paper in VARIANTS:
        per_seed = []
        for s in seeds:
            cfg = dataclasses.replace(base, method="vicreg", seed=s, method_kwargs=dict(opts))
            m = train_config(base, "vicreg", opts, s, runs, data)
            if "status" not in m:
                m["projector_verdict"], m["projector_std_ratio"] = projector_verdict(cfg, data, runs)
            per_seed.append(m)
            logger.info(
                f"[vicreg-ablation] {label} seed {s}: k-NN {m.get('knn.top1', float('nan')):.2f}, "
                f"backbone {VERDICT.get(int(m.get('collapse.verdict_code', -1)), m.get('status'))}, "
                f"projector {m.get('projector_verdict', '-')} ({time.perf_counter() - t0:.0f} s)",
            )
        row: dict = {
            "variant": label,
            "lambda (inv)": opts.get("inv_weight", 25.0),
            "mu (var)": opts.get("var_weight", 25.0),
            "nu (cov)": opts.get("cov_weight", 1.0),
            "seeds": len(seeds),
            "paper (ImageNet linear top-1)": paper,
        }
        for key, col in (
            ("knn.top1", "k-NN top1"),
            ("linear.top1", "linear top1"),
            ("rankme.rank", "RankMe"),
            ("collapse.std_ratio", "backbone std·√d"),
            ("projector_std_ratio", "projector std·√d"),
        ):
            mu, sd = mean_std([m.get(key) for m in per_seed])
            row[col] = mu
            row[col + " sd"] = sd
        row["backbone verdict"] = _verdicts(
            [
                VERDICT.get(int(m["collapse.verdict_code"])) if "collapse.verdict_code" in m else m.get("status", "?")
                for m in per_seed
            ]
        )
        row["projector verdict"] = _verdicts([m.get("projector_verdict", m.get("status", "?")) for m in per_seed])
        rows.append(row)
    from ..stats import welch_p  # imports torch: not at module level (config errors come first)

    full = rows[-1]  # the full loss, against which every variant is tested
    for r in rows[:-1]:
        for col in ("k-NN top1", "linear top1"):
            r[f"{col} p vs VICReg"] = welch_p(
                r[col], r[col + " sd"], len(seeds), full[col], full[col + " sd"], len(seeds)
            )
    refs = reference_rows(base, data, runs, seeds[0])
    cols = [
        "variant",
        "lambda (inv)",
        "mu (var)",
        "nu (cov)",
        "seeds",
        "k-NN top1",
        "k-NN top1 sd",
        "k-NN top1 p vs VICReg",
        "linear top1",
        "linear top1 sd",
        "linear top1 p vs VICReg",
        "RankMe",
        "RankMe sd",
        "backbone verdict",
        "backbone std·√d",
        "projector verdict",
        "projector std·√d",
        "paper (ImageNet linear top-1)",
    ]
    name = "vicreg-ablation" + ("-tiny" if a.budget == "tiny" else "")
    intro = (
        f"VICReg with loss terms removed, trained by the sweep on {base.dataset} at the `{base.preset}` preset"
        f"{' (tiny test budget)' if a.budget == 'tiny' else ''} with a training subset of {base.train_subset} "
        f"images, evaluated on {base.eval_train_subset or 'all'} train / {base.eval_test_subset or 'all'} test "
        f"embeddings, seeds "
        f"{','.join(map(str, seeds))}; mean and "
        f"sample sd over seeds. Verdicts: one word per seed (ok / dimensional / complete), on the backbone "
        f"(what the evaluators see) and on the projector output (where the loss acts). `p vs VICReg`: the "
        f"two-sided Welch t-test of the variant's seeds against the full loss's (above 0.05: a tie at this "
        f"number of seeds). The paper's column "
        f"is its own result (ImageNet, 100 epochs), quoted for comparison. The last two rows are the references "
        f"at the same evaluation budget: the untrained backbone and the raw pixels. Wall time of the study: "
        f"{time.perf_counter() - t0:.0f} s."
    )
    notes = [
        "The paper's Inv + Cov rows: we ran two weightings, (lambda, nu) = (25, 1) and (1, 25), both with "
        "mu = 0; that these are the paper's two weightings was not checked against the paper's table."
    ]
    png = figure(rows, Path(a.out) / f"{name}.png")
    rows = rows + refs
    paths = write_table(
        Path(a.out),
        name,
        cols,
        rows,
        "VICReg loss-term ablation (Bardes et al. 2022)",
        intro,
        command_line(a),
        notes,
        extra_md=f"![k-NN, linear and RankMe per variant]({png.name})",
    )
    return [*paths, png]


def figure(rows: list[dict], path: Path) -> Path:
    """k-NN and linear top-1 (mean, sd over seeds) and RankMe per variant; a variant whose backbone
    was judged collapsed on some seed is hatched."""
    from ..figures import _plt

    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    labels = [r["variant"].replace(" (", "\n(").replace("lambda ", "λ=").replace("nu ", "ν=") for r in rows]
    x = range(len(rows))
    hatch = ["//" if any(w.strip() != "ok" for w in r["backbone verdict"].split(",")) else "" for r in rows]
    for off, col, color in ((-0.2, "k-NN top1", "tab:blue"), (0.2, "linear top1", "tab:orange")):
        bars = a1.bar(
            [i + off for i in x],
            [r[col] for r in rows],
            0.4,
            yerr=[r[col + " sd"] for r in rows],
            label=col,
            color=color,
            capsize=3,
        )
        for b, h in zip(bars, hatch, strict=True):
            b.set_hatch(h)
    lo = min(min(r["k-NN top1"], r["linear top1"]) for r in rows)
    a1.set_ylim(max(0.0, lo - 10), 100)
    a1.set_ylabel("top-1 %")
    a1.legend(fontsize=8)
    a2.bar(
        list(x),
        [r["RankMe"] for r in rows],
        0.6,
        yerr=[r["RankMe sd"] for r in rows],
        color="tab:green",
        capsize=3,
        hatch=None,
    )
    for b, h in zip(a2.patches, hatch, strict=True):
        b.set_hatch(h)
    a2.set_ylabel("RankMe")
    for ax in (a1, a2):
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=7)
    return save_figure(fig, path, "VICReg ablation (hatched: backbone judged collapsed on some seed)")


def _verdicts(words: list) -> str:
    return ", ".join(str(w) for w in words)


register(
    Study(
        "vicreg-ablation",
        "VICReg loss-term ablation (Inv / +Var / +Cov / full), k-NN, linear, RankMe, collapse",
        __doc__ or "",
        add_arguments,
        run,
    )
)
