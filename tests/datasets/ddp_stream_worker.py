"""Worker of tests/datasets/test_streaming.py's DDP test, started by torchrun (2 gloo processes):

    python -m torch.distributed.run --nproc-per-node 2 tests/datasets/ddp_stream_worker.py FOLDER OUT

Trains the test's config (SGD, 2 steps) twice: on the streamed PNG folder (each rank decodes its
own slice of every global batch) into OUT/stream, and on the same images in memory into OUT/memory.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fmnist_folder import DDP_CONFIG, cfg, class_major, streamed  # noqa: E402

from ssl_bench.datasets import load_dataset  # noqa: E402
from ssl_bench.trainer import train  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[2])
    train(cfg(**DDP_CONFIG), out / "stream", data=streamed(Path(sys.argv[1])))
    train(cfg(**DDP_CONFIG), out / "memory", data=class_major(load_dataset("fashion-mnist")))
