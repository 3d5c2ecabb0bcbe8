"""Streaming vs in-memory training throughput (issue #18: "throughput on CPU >= 70% of the
in-memory path at 2 workers"), on Fashion-MNIST written as 70k PNG files.

A speed goal, so it lives here and not in the test run (the test run checks that both paths train
the same weights and agree on k-NN: ``tests/datasets/test_streaming.py``). Each round trains the
in-memory data and the streamed folder for 2 epochs of 32 steps (simclr, cnn-small, batch 64, fp32,
2 decoding workers), interleaved so that both see the same load; the figure is the second epoch's
time (the decoding workers start once per run, in the first). ``extra_info`` holds every round's
seconds and the ratio of the best in-memory to the best streamed second epoch.
"""
import sys
from pathlib import Path

import pytest

from benchutil import ROUNDS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "datasets"))
from fmnist_folder import cfg, class_major, streamed, write_fmnist_folder  # noqa: E402

STEPS = 32  # per epoch, batch 64
GOAL = 0.70


@pytest.fixture(scope="module")
def fmnist_png(tmp_path_factory, fmnist):
    return write_fmnist_folder(tmp_path_factory.mktemp("fmnist-png"))


def epoch_seconds(run_dir: Path) -> list[float]:
    import csv

    with open(run_dir / "train_log.csv") as f:
        total = [float(r["seconds"]) for r in csv.DictReader(f)]
    return [b - a for a, b in zip([0.0, *total[:-1]], total, strict=True)]


def test_streaming_throughput(benchmark, fmnist, fmnist_png, tmp_path):
    from ssl_bench.trainer import train

    benchmark.group = "streaming"
    memory, stream = class_major(fmnist), streamed(fmnist_png)
    epoch2: dict[str, list[float]] = {"memory": [], "stream": []}

    def one_round():
        i = len(epoch2["memory"])
        for name, data, ds in (("memory", memory, "fashion-mnist"), ("stream", stream, "imagefolder")):
            res = train(cfg(dataset=ds, epochs=2, train_subset=64 * STEPS), tmp_path / f"{name}{i}", data=data)
            epoch2[name].append(epoch_seconds(res.run_dir)[1])

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    ratio = min(epoch2["memory"]) / min(epoch2["stream"])
    benchmark.extra_info.update(epoch2_seconds=epoch2, steps_per_epoch=STEPS, throughput_ratio=ratio)
    print(f"\nsecond-epoch seconds ({STEPS} steps) memory {epoch2['memory']} stream {epoch2['stream']}: "
          f"throughput stream/memory {ratio:.2f}")
    assert ratio >= GOAL, f"streaming at {ratio:.0%} of the in-memory throughput (goal {GOAL:.0%})"
