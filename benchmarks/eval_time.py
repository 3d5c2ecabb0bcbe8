"""Evaluation time per checkpoint against its training time: train one checkpoint, then evaluate it
with every default evaluator, in process, as ``ssl-bench train`` + ``ssl-bench eval CKPT`` do.

    # on a GPU: the quick preset (what issue #17 compares with: eval <= 25% of training)
    python benchmarks/eval_time.py --device cuda --preset quick --jsonl runs/eval.jsonl
    # on a CPU, tiny sizes, to prove it runs
    python benchmarks/eval_time.py --device cpu --preset smoke --set train_subset=256 --set batch_size=64 \
        --set eval_train_subset=512 --set eval_test_subset=256

Writes one JSON line: the training's own ``train_seconds`` (the epoch loop, as the checkpoint
records it) and wall time, the evaluation's wall time (data loading, embedding extraction and
every evaluator) and each evaluator's seconds, their ratio, and the k-NN backend (FAISS when it
imports, else torch matmul; the ``knn`` evaluator searches on the host either way).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--method", default="simclr")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--preset", default="quick")
    p.add_argument("--evaluators", default="default")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=INT",
                   help="integer config overrides (train_subset, batch_size, epochs, eval_*_subset)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--out", default=None, help="runs folder (default: a temporary one, removed)")
    p.add_argument("--jsonl", default=None, help="append the JSON line to this file")
    a = p.parse_args(argv)

    from ssl_bench.config import RunConfig
    from ssl_bench.evaluators.knn import faiss_available
    from ssl_bench.pipeline import evaluate_checkpoint
    from ssl_bench.trainer import train

    over: dict[str, Any] = {k: int(v) for k, v in (s.split("=", 1) for s in a.sets)}
    if a.threads:
        torch.set_num_threads(a.threads)  # training and evaluation alike
    cfg = RunConfig(method=a.method, dataset=a.dataset, preset=a.preset, device=a.device, progress=False,
                    knn_monitor_every=0, evaluators=[e.strip() for e in a.evaluators.split(",")], **over)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.out) if a.out else Path(tmp)
        t0 = time.perf_counter()
        res = train(cfg, out)
        t1 = time.perf_counter()
        rows = evaluate_checkpoint(res.checkpoint, device=a.device)
        t2 = time.perf_counter()
    per_ev: dict[str, float] = {}
    for r in rows:
        per_ev[r["evaluator"]] = round(float(r["eval_seconds"]), 3)
    knn = {r["metric"]: r["value"] for r in rows if r["evaluator"] == "knn"}
    dev = torch.device(a.device)
    line = {
        "kind": "eval", "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "method": a.method, "dataset": a.dataset, "preset": a.preset, "overrides": over,
        "backbone": rows[0]["backbone"] if rows else None, "threads": torch.get_num_threads(),
        "train_seconds": round(res.train_seconds, 3), "train_wall_s": round(t1 - t0, 3),
        "eval_wall_s": round(t2 - t1, 3), "evaluator_seconds": per_ev,
        "evaluators_total_s": round(sum(per_ev.values()), 3),
        "load_and_embed_s": round(t2 - t1 - sum(per_ev.values()), 3),
        "eval_over_train": round((t2 - t1) / res.train_seconds, 4) if res.train_seconds > 0 else None,
        "knn_backend": "faiss" if faiss_available() else "torch",
        "knn_top1": knn.get("top1"), "torch": torch.__version__,
    }
    print(json.dumps(line), flush=True)
    if a.jsonl:
        with open(a.jsonl, "a") as f:
            f.write(json.dumps(line) + "\n")
    return line


if __name__ == "__main__":
    main()
