"""Tune a recipe on a validation split carved from the training set, never on the test set.

The validation data: a seeded 10,000 of Fashion-MNIST's 60,000 training images are held out as
queries; the other 50,000 are the k-NN memory bank and the pool the training subset is drawn from
(so validation queries are never trained on). Each trial trains one configuration at a preset's
budget (default ``quick``) and scores k-NN top-1 (cosine, k = 20, T = 0.07: the ``knn``
evaluator's defaults) and, with ``--linear``, the fast linear probe, on those held-out images.
The test split is never loaded into a trial.

    python scripts/tune_val.py ema-jepa --opt ema_tau=0.996 --set lr=1e-3
    python scripts/tune_val.py random-init           # the untrained backbone on the same split

Every trial appends one JSON row (method, options, settings, validation scores, seconds, CPU) to
``leaderboards/tuning/<dataset>-<preset>-val.jsonl``; ``--print`` shows the file as a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ssl_bench import precision as prec
from ssl_bench.backbones import build_backbone
from ssl_bench.bn_calibration import recalibrate_batchnorm
from ssl_bench.build import backbone_choice, resolve_device, seed_everything
from ssl_bench.cli import _parse_kv
from ssl_bench.config import RunConfig
from ssl_bench.data import Data
from ssl_bench.datasets import VAL_SEED, VAL_SIZE, load_dataset, validation_split
from ssl_bench.embeddings import Embeddings, embed_data, load_method_from_checkpoint
from ssl_bench.provenance import hardware
from ssl_bench.trainer import train

HERE = Path(__file__).resolve().parent.parent


def validation_data(dataset: str, data_root: str | None = None) -> Data:
    """(train pool, validation queries) as one Data: ``x_test`` holds held-out TRAINING images
    (:func:`ssl_bench.datasets.validation_split`, the split ``ssl-bench study rankme-selection``
    uses too)."""
    return validation_split(load_dataset(dataset, data_root), VAL_SIZE, VAL_SEED)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def score(emb: Embeddings, linear: bool) -> dict:
    from ssl_bench.evaluators.knn import knn_accuracy

    out = {"val_knn": knn_accuracy(emb.train_x, emb.train_y, emb.test_x, emb.test_y)["top1"]}
    if linear:
        from ssl_bench.evaluators.linear import linear_fast

        out["val_linear"] = linear_fast(emb.train_x, emb.train_y, emb.test_x, emb.test_y)[0]["top1"]
    return out


def optimiser_table(rows: list[dict]) -> list[str]:
    """The trials tagged ``optimiser: ...`` side by side, one line per method, one column per tag
    (k-NN / linear); the last trial of a (method, tag) counts."""
    tagged = [r for r in rows if str(r.get("tag", "")).startswith("optimiser: ")]
    if not tagged:
        return []
    tags = list(dict.fromkeys(r["tag"].removeprefix("optimiser: ") for r in tagged))
    cells: dict[str, dict[str, dict]] = {}
    for r in tagged:
        cells.setdefault(r["method"], {})[r["tag"].removeprefix("optimiser: ")] = r
    out = [
        "## Optimisers",
        "",
        "The harness's AdamW, each method's paper optimiser (`--set optimizer=paper`: the method's "
        "`paper_optim`) and AdamW with a weight decay that acts, on the same validation split; each cell "
        "is val k-NN top-1 / val linear top-1 of one trial (one seed, so a difference under about 1 point "
        "is a tie). The trials are in the per-method tables below, tagged `optimiser: ...`.",
        "",
        "| method | " + " | ".join(tags) + " | paper optimiser |",
        "|---|" + "---|" * (len(tags) + 1),
    ]
    for method, by_tag in cells.items():
        vals = []
        for t in tags:
            cell = by_tag.get(t)
            lin = f"{cell['val_linear']:.2f}" if cell and "val_linear" in cell else "-"
            vals.append(f"{cell['val_knn']:.2f} / {lin}" if cell else "-")
        out.append(f"| {method} | " + " | ".join(vals) + f" | {paper_optim_text(method)} |")
    return out + [""]


def paper_optim_text(method: str) -> str:
    """The method's declared paper optimiser in words (``-`` where it declares none)."""
    from ssl_bench.registry import METHODS

    p = getattr(METHODS.get(method), "paper_optim", {}) if method in METHODS else {}
    if not p:
        return "-"
    lr = f"lr {p['lr']:g}" + (f" x batch/{p['lr_batch']}" if p.get("lr_batch") else "")
    return f"{str(p['optimizer']).upper() if p['optimizer'] != 'adamw' else 'AdamW'}, {lr}, wd {p['weight_decay']:g}"


def markdown(log: Path, dataset: str, preset: str) -> str:
    """The tuning rows as a page: one table per method, in the order the trials ran."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    out = [
        f"# Recipe tuning on a validation split: {dataset}, `{preset}` budget",
        "",
        f"Generated by `python scripts/tune_val.py --markdown docs/tuning.md` from `{log.relative_to(HERE)}`; "
        "do not edit by hand. Each row is one trial of `python scripts/tune_val.py METHOD [--opt K=V] "
        "[--set K=V]` (most with `--set precision=fp32`; the settings column names the precision): "
        "the method trained at the preset's budget on a pool of 50,000 "
        "training images, scored by k-NN top-1 (cosine, k = 20, T = 0.07) with those 50,000 as the memory "
        "bank and 10,000 other TRAINING images (seeded, never trained on) as queries. The test split is never "
        "loaded. One seed per trial: differences under about 1 point are within noise. Training seconds "
        "were measured on a shared 2-core CPU under varying load (other work ran beside most trials) and "
        "say little about speed. A tag `evaluated=target` marks a trial scored on the method's EMA target "
        "encoder instead of the online one: a one-line change of the method's `evaluated` class attribute "
        "made for that trial and not kept (neither trial gained).",
        "",
    ]
    out += optimiser_table(rows)
    by_method: dict[str, list[dict]] = {}
    for r in rows:
        by_method.setdefault(r["method"].split("[")[0], []).append(r)
    for method, rs in by_method.items():
        out += [
            f"## {method}",
            "",
            "| trial | options | settings | val k-NN top1 | val linear top1 | train s | CPU | tag | when |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rs:
            lin = f"{r['val_linear']:.2f}" if "val_linear" in r else "-"
            sets = {k: v for k, v in r["set"].items() if k != "precision"}
            out.append(
                f"| {r['method']} | `{json.dumps(r['opt'])}` | `{json.dumps(sets)}` {r['precision']} "
                f"| {r['val_knn']:.2f} | "
                f"{lin} | {r['train_s']:.0f} | {r.get('cpu_model', '')} | {r['tag']} | {r['when']} |"
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("method", nargs="?", help="a method name, or random-init")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--preset", default="quick")
    p.add_argument("--like", default="simclr", help="random-init: the backbone this method trains (default simclr)")
    p.add_argument("--linear", action="store_true", help="also the fast linear probe")
    p.add_argument("--tag", default="", help="a note stored in the row")
    p.add_argument(
        "--bn-recalibrate",
        action="store_true",
        help="re-estimate the trained encoder's BN statistics on the clean pool images before scoring",
    )
    p.add_argument("--out", default=str(HERE / "runs" / "tune"))
    p.add_argument("--print", action="store_true", help="print the tuning file as a table and exit")
    p.add_argument("--markdown", metavar="PATH", help="write the tuning file as a Markdown page and exit")
    a = p.parse_args(argv)
    log = HERE / "leaderboards" / "tuning" / f"{a.dataset}-{a.preset}-val.jsonl"
    if a.markdown:
        Path(a.markdown).write_text(markdown(log, a.dataset, a.preset))
        return 0
    if a.print:
        for line in log.read_text().splitlines():
            r = json.loads(line)
            print(
                f"{r['method']:16s} {r.get('val_knn', 0):6.2f} {r.get('val_linear', float('nan')):6.2f} "
                f"{r['train_s']:6.0f}s {json.dumps(r['opt'])} {json.dumps(r['set'])} {r['tag']}"
            )
        return 0
    sets, opts = _parse_kv(a.sets, "--set"), _parse_kv(a.opt, "--opt")
    data = validation_data(a.dataset, sets.get("data_root"))
    name = a.method
    cfg = RunConfig.from_dict(
        {
            "method": a.like if name == "random-init" else name,
            "dataset": a.dataset,
            "preset": a.preset,
            "knn_monitor_every": 0,
            "progress": False,
            "method_kwargs": opts,
            **sets,
        }
    ).with_preset()
    dev = resolve_device(cfg.device)
    t0 = time.perf_counter()
    if name == "random-init":
        seed_everything(cfg.seed)
        bb, kw = backbone_choice(cfg, data.kind)
        net = build_backbone(bb, data.input_shape, data.kind, **kw).to(dev).eval()
        encode: Callable[[torch.Tensor], torch.Tensor] = net
        precision, train_s = prec.resolve_precision(cfg.precision, dev), 0.0
    else:
        # a fresh directory per trial: a changed default is not in the config hash of a run id
        res = train(cfg, Path(a.out) / time.strftime("%Y%m%dT%H%M%S"), data=data)
        method, mcfg, _ = load_method_from_checkpoint(res.checkpoint, dev)
        encode, precision, train_s = method.encode, prec.resolve_precision(mcfg.precision, dev), res.train_seconds
        if a.bn_recalibrate:  # clean pool images (never the validation queries), no gradient
            recalibrate_batchnorm(method.backbone, data, dev, seed=cfg.seed)  # what encode runs
            sets = {**sets, "bn_recalibrate": True}
    emb = embed_data(encode, data, dev, precision=precision)
    row = {
        "method": name if name != "random-init" else f"random-init[{a.like}]",
        "opt": opts,
        "set": sets,
        "preset": a.preset,
        "seed": cfg.seed,
        **score(emb, a.linear),
        "train_s": round(train_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "precision": precision,
        "cpu": hardware(dev),
        "cpu_model": _cpu_model(),
        "host": platform.node(),
        "tag": a.tag,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
