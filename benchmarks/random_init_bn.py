"""random-init ``cnn-small`` on Fashion-MNIST (the quick/standard boards' evaluation data, 60k bank,
10k test): k-NN top-1 with the BN statistics at their initial values and re-estimated on the
training images (``ssl_bench.bn_calibration``), seeds 0-2, then Welch tests of every ``cnn-small``
row of the committed boards against both references (which margins change sign or significance).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/random_init_bn.py [--from-jsonl FILE]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/random_init_bn.py --robustness   # the robustness
        # evaluator (defaults) on the recalibrated seed-0 network, with its wall time
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent


def measure(seeds: list[int]) -> list[dict]:
    from ssl_bench.backbones import build_backbone
    from ssl_bench.bn_calibration import recalibrate_batchnorm
    from ssl_bench.build import load_data, seed_everything
    from ssl_bench.config import RunConfig
    from ssl_bench.embeddings import embed_data, eval_split
    from ssl_bench.registry import EVALUATORS

    cfg = RunConfig(dataset="fashion-mnist", preset="quick", device="cpu", precision="fp32").with_preset()
    data = load_data(cfg)
    ev, dev, out = eval_split(cfg, data), torch.device("cpu"), []
    for seed in seeds:
        for cal in (True, False):
            seed_everything(seed)  # the weights evaluate_baselines builds
            net = build_backbone("cnn-small", data.input_shape, data.kind).eval()
            if cal:
                recalibrate_batchnorm(net, ev, dev)
            knn = EVALUATORS.get("knn")()(embed_data(net, ev, dev, precision="fp32"))["top1"]
            out.append({"seed": seed, "bn": "train" if cal else "init", "knn": knn})
            print(json.dumps(out[-1]), flush=True)
    return out


def robustness() -> None:
    import time

    from ssl_bench.backbones import build_backbone
    from ssl_bench.bn_calibration import recalibrate_batchnorm
    from ssl_bench.build import load_data, seed_everything
    from ssl_bench.config import RunConfig
    from ssl_bench.embeddings import eval_split
    from ssl_bench.method import Method
    from ssl_bench.registry import EVALUATORS

    cfg = RunConfig(dataset="fashion-mnist", preset="quick", device="cpu", precision="fp32").with_preset()
    data = load_data(cfg)
    ev, dev = eval_split(cfg, data), torch.device("cpu")
    seed_everything(0)
    net = build_backbone("cnn-small", data.input_shape, data.kind).eval()
    recalibrate_batchnorm(net, ev, dev)
    t = time.time()
    m = EVALUATORS.get("robustness")().run_model(Method(net).eval(), ev, dev)
    print(json.dumps({"seconds": time.time() - t, **m}))


def margins(rows: list[dict]) -> None:
    from ssl_bench.leaderboard import welch_difference

    new = np.array([r["knn"] for r in rows if r["bn"] == "train"])
    print(f"recalibrated: {new.tolist()} mean {new.mean():.2f}")
    ref_new = (float(new.mean()), float(new.std(ddof=1)), len(new))
    for board in ("fashion-mnist", "fashion-mnist-standard"):
        t = pd.read_csv(ROOT / "leaderboards" / f"{board}.csv")
        r0 = t[(t.method == "random-init") & (t.backbone == "cnn-small")].iloc[0]
        ref_old = (r0.knn_top1_mean, r0.knn_top1_std, int(r0.knn_top1_n))
        print(f"\n{board}: committed reference {ref_old[0]:.2f}, recalibrated {ref_new[0]:.2f}")
        for _, r in t[(t.backbone == "cnn-small") & (t.method != "random-init")].iterrows():
            a = (r.knn_top1_mean, r.knn_top1_std, int(r.knn_top1_n))
            o, n = welch_difference(a, ref_old), welch_difference(a, ref_new)
            flag = " SIGN" if math.copysign(1, o["mean"]) != math.copysign(1, n["mean"]) else ""
            flag += " SIGNIFICANCE" if (o["p"] < 0.05) != (n["p"] < 0.05) else ""
            print(f"  {r.label:34s} {o['mean']:+.2f} (p {o['p']:.3f}) -> {n['mean']:+.2f} (p {n['p']:.3f}){flag}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--from-jsonl", type=Path, help="reuse the per-seed lines of an earlier run")
    p.add_argument("--robustness", action="store_true", help="only the robustness evaluator on seed 0")
    a = p.parse_args()
    if a.robustness:
        return robustness()
    if a.from_jsonl:
        rows = [json.loads(x) for x in a.from_jsonl.read_text().splitlines() if x.strip()]
    else:
        rows = measure([int(s) for s in a.seeds.split(",")])
    margins(rows)


if __name__ == "__main__":
    main()
