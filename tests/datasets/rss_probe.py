"""Peak resident memory of training a few steps and evaluating over a whole streamed folder.

    python tests/datasets/rss_probe.py FOLDER OUT   -> one JSON line: peak_mib, embedded, top1

Run in its own process by tests/datasets/test_streaming.py (VmHWM of this process; the decoding
workers are separate processes with their own bounded memory). Evaluation embeds every file of
both splits (no evaluation subset) and runs k-NN over the on-disk embeddings.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fmnist_folder import cfg, streamed  # noqa: E402

import torch  # noqa: E402

from ssl_bench.embeddings import checkpoint_embeddings  # noqa: E402
from ssl_bench.pipeline import run_evaluators  # noqa: E402
from ssl_bench.trainer import train  # noqa: E402


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    torch.set_num_threads(2)
    phases = {"start": vm_hwm_mib()}
    data = streamed(Path(sys.argv[1]))
    phases["load"] = vm_hwm_mib()
    res = train(cfg(epochs=1, batch_size=256, train_subset=512), Path(sys.argv[2]), data=data)  # 2 steps
    phases["train"] = vm_hwm_mib()
    emb = checkpoint_embeddings(res.checkpoint, data, torch.device("cpu"))[0]
    assert emb.on_disk
    phases["embed"] = vm_hwm_mib()
    metrics = run_evaluators(emb, ["knn"])["knn"][0]
    phases["knn"] = vm_hwm_mib()
    print(json.dumps({"peak_mib": vm_hwm_mib(), "embedded": int(len(emb.train_x) + len(emb.test_x)),
                      "top1": metrics["top1"], "phases": phases}))
