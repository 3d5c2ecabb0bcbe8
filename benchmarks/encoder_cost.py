"""Cost per image of common encoders through ``ssl-bench eval --encoder`` (docs/evaluate-your-encoder.md).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/encoder_cost.py [--batch 16] [--batches 2]

Each SPEC is built as ``eval --encoder`` builds it (random init: the cost does not depend on the
weights) and embeds grey 28x28 Fashion-MNIST-shaped batches through the same input adaptation
(3 channels, resize, normalisation) under ``torch.inference_mode`` in fp32, after one warm-up
batch. Prints milliseconds per image and the hours 70,000 images (Fashion-MNIST's train + test)
would take at that rate. Wall-clock on whatever the machine is doing: say how loaded it was.
"""

from __future__ import annotations

import argparse
import time

import torch

from ssl_bench.external import AdaptedEncoder, resolve

ENCODERS = (
    ("timm:resnet18", 32),
    ("timm:resnet18", 224),
    ("timm:resnet50", 224),
    ("timm:vit_tiny_patch16_224", 224),
    ("timm:vit_small_patch16_224", 224),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=2)
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch}, fp32")
    print("| encoder | input | ms / image | 70k images |")
    print("|---|---|---|---|")
    x = torch.rand(a.batch, 1, 28, 28)
    for spec, size in ENCODERS:
        torch.manual_seed(0)
        built = resolve(spec)
        enc = AdaptedEncoder(built, built.in_chans, size).eval()
        with torch.inference_mode():
            enc(x[:4])
            t0 = time.perf_counter()
            for _ in range(a.batches):
                enc(x)
            per = (time.perf_counter() - t0) / (a.batches * a.batch)
        print(f"| `{spec}` | {size} px | {per * 1e3:.1f} | {per * 70_000 / 3600:.2f} h |", flush=True)


if __name__ == "__main__":
    main()
