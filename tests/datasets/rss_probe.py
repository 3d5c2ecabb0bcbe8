"""Peak resident memory of training a few steps and evaluating over a whole streamed folder.

    python tests/datasets/rss_probe.py FOLDER OUT   -> one JSON line: peak_mib, embedded, top1

Run in its own process by tests/datasets/test_streaming.py (VmHWM of this process, per phase; the
decoding workers are separate processes with their own bounded memory). Training runs 2 steps;
evaluation embeds every file of both splits (no evaluation subset) and runs k-NN over the on-disk
embeddings.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fmnist_folder import FMNIST_MEAN, FMNIST_STD, cfg  # noqa: E402

import torch  # noqa: E402

from ssl_bench.datasets import load_dataset  # noqa: E402
from ssl_bench.embeddings import checkpoint_embeddings  # noqa: E402
from ssl_bench.pipeline import run_evaluators  # noqa: E402
from ssl_bench.trainer import train  # noqa: E402


def reset_peak() -> None:
    """Start a new peak: writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    torch.set_num_threads(2)
    phases = {"start": vm_hwm_mib()}  # the peak of each phase, the next one starting from the current RSS
    # decoded at 64 px: held in memory, each image would take 4 KiB (the difference 10k -> 70k files
    # is then 234 MiB), far above the allocator's run-to-run noise; the MLP keeps the forward cheap
    data = load_dataset("imagefolder", root=Path(sys.argv[1]), image_size=64, channels=1, mean=FMNIST_MEAN,
                        std=FMNIST_STD)
    phases["load"] = vm_hwm_mib()
    reset_peak()
    res = train(cfg(epochs=1, batch_size=256, train_subset=512, backbone="mlp"), Path(sys.argv[2]), data=data)
    phases["train"] = vm_hwm_mib()
    reset_peak()
    emb = checkpoint_embeddings(res.checkpoint, data, torch.device("cpu"))[0]
    assert emb.on_disk
    phases["embed"] = vm_hwm_mib()
    reset_peak()
    metrics = run_evaluators(emb, ["knn"])["knn"][0]
    phases["knn"] = vm_hwm_mib()
    print(json.dumps({"peak_mib": max(phases.values()), "embedded": int(len(emb.train_x) + len(emb.test_x)),
                      "top1": metrics["top1"], "phases": phases}))
