"""Worker of tests/datasets/test_streaming.py's DDP test, started by torchrun (2 gloo processes):

    python -m torch.distributed.run --nproc-per-node 2 tests/datasets/ddp_stream_worker.py FOLDER OUT

Trains the test's config (SGD) on the streamed PNG folder; each rank decodes its own slice.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_streaming import cfg, streamed  # noqa: E402

from ssl_bench.trainer import train  # noqa: E402

if __name__ == "__main__":
    train(cfg(optimizer="sgd", num_workers=1), Path(sys.argv[2]), data=streamed(Path(sys.argv[1])))
