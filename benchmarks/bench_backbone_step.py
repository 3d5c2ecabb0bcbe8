"""Forward + backward time of registered backbones on one batch (CPU, fp32, channels_last).

    python benchmarks/bench_backbone_step.py --backbones cnn-small,cnn-wide --batch-size 128 \
        --shape 1,28,28 --rounds 5 --steps 5

Each round times ``--steps`` consecutive forward+backward passes (GAP output, ``mean()`` as the
loss, no optimiser) of every backbone in turn, so that a load change on a shared machine hits all
backbones alike; prints the median seconds per batch over rounds and the ratio to the first.
Image batches and weights are channels_last as in the trainer (``ssl_bench.precision``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ssl_bench import precision
from ssl_bench.backbones import build_backbone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="cnn-small,cnn-wide")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--shape", default="1,28,28", help="C,H,W")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    shape = tuple(int(s) for s in a.shape.split(","))
    names = [n.strip() for n in a.backbones.split(",") if n.strip()]
    x = precision.to_layout(torch.randn(a.batch_size, *shape), True)
    nets = {n: precision.model_to_layout(build_backbone(n, shape, "image"), True).train() for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}

    def step(net):
        net.zero_grad(set_to_none=True)
        net(x).mean().backward()

    for n in names:  # warm-up (oneDNN primitive creation)
        step(nets[n])
        step(nets[n])
    for _ in range(a.rounds):
        for n in names:
            t0 = time.perf_counter()
            for _ in range(a.steps):
                step(nets[n])
            times[n].append((time.perf_counter() - t0) / a.steps)
    base = statistics.median(times[names[0]])
    out = {}
    for n in names:
        med = statistics.median(times[n])
        params = sum(p.numel() for p in nets[n].parameters())
        out[n] = dict(params=params, median_s=round(med, 4), min_s=round(min(times[n]), 4),
                      max_s=round(max(times[n]), 4), ratio=round(med / base, 2))
        print(f"{n:16s} {params / 1e6:6.2f}M params  {med * 1000:8.1f} ms/batch (min {min(times[n]) * 1000:.1f}, "
              f"max {max(times[n]) * 1000:.1f})  x{med / base:.2f}")
    print(json.dumps(dict(batch_size=a.batch_size, shape=shape, threads=a.threads, torch=torch.__version__,
                          results=out)))


if __name__ == "__main__":
    main()
