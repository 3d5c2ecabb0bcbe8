"""Training time under each thread setting, on a quiet machine and beside one CPU-bound process.

    python benchmarks/threads_under_load.py --rounds 2            # docs/benchmarks.md, section 7

Each cell is one ``ssl-bench train`` (SimCLR, cnn-small, fp32, ``--steps`` steps of batch 128, no
k-NN monitor) in a fresh process with ``SSL_BENCH_THREADS`` set to the column's value; the
figure is the training time the command prints (its own clock, data loading excluded). "busy"
rows run with one other process busy-looping in pure Python beside it (one core's worth of
load, as a second job on a shared machine). Rounds alternate quiet and busy, so a drift in the
machine's speed hits both; the 1-minute load average is printed with each row.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_seconds(setting: str, steps: int, out: Path) -> float:
    cli = Path(sys.executable).with_name("ssl-bench")
    cmd = [str(cli), "train", "--method", "simclr", "--out", str(out), "--set", "epochs=1",
           "--set", f"train_subset={steps * 128}", "--set", "batch_size=128", "--set", "knn_monitor_every=0",
           "--set", "progress=false", "--set", "precision=fp32"]
    env = {**os.environ, "SSL_BENCH_THREADS": setting}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    m = re.search(r"in ([0-9.]+)s ->", r.stdout)
    if not m:
        raise RuntimeError(f"no training time in: {r.stdout}{r.stderr}")
    return float(m.group(1))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--settings", default="fair,2,1", help="SSL_BENCH_THREADS values, comma-separated")
    a = p.parse_args(argv)
    settings = a.settings.split(",")
    print(f"# SimCLR cnn-small fp32, {a.steps} steps of 128, training seconds; cpus {os.cpu_count()}")
    print("| round | machine | " + " | ".join(f"SSL_BENCH_THREADS={s}" for s in settings) + " | load |")
    print("|---|---|" + "---|" * len(settings) + "---|")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for busy in (False, True):
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
                try:
                    cells = [train_seconds(s, a.steps, Path(tmp) / f"{r}-{busy}-{s}") for s in settings]
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
                load = os.getloadavg()[0]
                print(f"| {r + 1} | {'busy' if busy else 'quiet'} | " + " | ".join(f"{c:.1f}" for c in cells)
                      + f" | {load:.2f} |", flush=True)


if __name__ == "__main__":
    main()
