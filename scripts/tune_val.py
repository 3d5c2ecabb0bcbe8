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
from pathlib import Path

import torch

from ssl_bench import precision as prec
from ssl_bench.cli import _parse_kv
from ssl_bench.config import RunConfig
from ssl_bench.datasets import load_dataset
from ssl_bench.embeddings import embed_data, load_method_from_checkpoint
from ssl_bench.provenance import hardware
from ssl_bench.backbones import build_backbone
from ssl_bench.build import backbone_choice, resolve_device, seed_everything
from ssl_bench.trainer import train

HERE = Path(__file__).resolve().parent.parent
VAL_SIZE, VAL_SEED = 10_000, 2024


def validation_data(dataset: str, data_root: str | None = None):
    """(train pool, validation queries) as one Data: ``x_test`` holds held-out TRAINING images."""
    full = load_dataset(dataset, data_root)
    g = torch.Generator().manual_seed(VAL_SEED)
    perm = torch.randperm(len(full.x_train), generator=g)
    val, pool = perm[:VAL_SIZE].sort().values, perm[VAL_SIZE:].sort().values
    from dataclasses import replace

    return replace(full, name=f"{full.name}-val", x_train=full.x_train[pool], y_train=full.y_train[pool],
                   x_test=full.x_train[val], y_test=full.y_train[val])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def score(emb, linear: bool) -> dict:
    from ssl_bench.evaluators.knn import knn_accuracy

    out = {"val_knn": knn_accuracy(emb.train_x, emb.train_y, emb.test_x, emb.test_y)["top1"]}
    if linear:
        from ssl_bench.evaluators.linear import linear_fast

        out["val_linear"] = linear_fast(emb.train_x, emb.train_y, emb.test_x, emb.test_y)[0]["top1"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("method", nargs="?", help="a method name, or random-init")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--preset", default="quick")
    p.add_argument("--like", default="simclr", help="random-init: the backbone this method trains (default simclr)")
    p.add_argument("--linear", action="store_true", help="also the fast linear probe")
    p.add_argument("--tag", default="", help="a note stored in the row")
    p.add_argument("--out", default=str(HERE / "runs" / "tune"))
    p.add_argument("--print", action="store_true", help="print the tuning file as a table and exit")
    a = p.parse_args(argv)
    log = HERE / "leaderboards" / "tuning" / f"{a.dataset}-{a.preset}-val.jsonl"
    if a.print:
        for line in log.read_text().splitlines():
            r = json.loads(line)
            print(f"{r['method']:16s} {r.get('val_knn', 0):6.2f} {r.get('val_linear', float('nan')):6.2f} "
                  f"{r['train_s']:6.0f}s {json.dumps(r['opt'])} {json.dumps(r['set'])} {r['tag']}")
        return 0
    sets, opts = _parse_kv(a.sets, "--set"), _parse_kv(a.opt, "--opt")
    data = validation_data(a.dataset, sets.get("data_root"))
    name = a.method
    cfg = RunConfig.from_dict({"method": a.like if name == "random-init" else name, "dataset": a.dataset,
                               "preset": a.preset, "knn_monitor_every": 0, "progress": False,
                               "method_kwargs": opts, **sets}).with_preset()
    dev = resolve_device(cfg.device)
    t0 = time.perf_counter()
    if name == "random-init":
        seed_everything(cfg.seed)
        bb, kw = backbone_choice(cfg, data.kind)
        net = build_backbone(bb, data.input_shape, data.kind, **kw).to(dev).eval()
        encode, precision, train_s = net, prec.resolve_precision(cfg.precision, dev), 0.0
    else:
        res = train(cfg, a.out, data=data)
        method, mcfg, _ = load_method_from_checkpoint(res.checkpoint, dev)
        encode, precision, train_s = method.encode, prec.resolve_precision(mcfg.precision, dev), res.train_seconds
    emb = embed_data(encode, data, dev, precision=precision)
    row = {"method": name if name != "random-init" else f"random-init[{a.like}]", "opt": opts, "set": sets, "preset": a.preset, "seed": cfg.seed, **score(emb, a.linear),
           "train_s": round(train_s, 1), "total_s": round(time.perf_counter() - t0, 1), "precision": precision,
           "cpu": hardware(dev), "cpu_model": _cpu_model(), "host": platform.node(), "tag": a.tag,
           "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
