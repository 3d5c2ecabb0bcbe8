import os
from pathlib import Path

import pytest
import torch

from ssl_bench import threads

TORCH_THREADS = min(2, os.cpu_count() or 1)
torch.set_num_threads(TORCH_THREADS)
# ``ssl-bench`` called in process (cli.main) and in subprocesses pins this count instead of the
# fair-share policy (ssl_bench.threads): results must not depend on the machine's load
os.environ[threads.ENV] = str(TORCH_THREADS)


@pytest.fixture(autouse=True)
def _torch_threads_as_set_here():
    """Every test starts with the same torch thread count: ``train()`` applies a config's
    ``num_threads`` to the whole process (the collapse cases use 1), and the DDP-equals-one-process
    check of tests/harness/test_distributed.py fails when its reference trains on another count than
    usual (reduction order moves vicreg's BatchNorm running mean beyond 1e-5 on mog2d). The
    fair-share policy is off (a test that turns it on turns it off here)."""
    threads.pin(TORCH_THREADS)
    yield
    threads.pin(TORCH_THREADS)

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
HAVE_FMNIST = (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file() or bool(os.environ.get("SSL_BENCH_DATA"))

needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST and not os.environ.get("CI"),
                                  reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


@pytest.fixture
def runs(tmp_path) -> Path:
    return tmp_path / "runs"


def tiny_config(**kw):
    """A config that trains in well under a second (mog2d + MLP)."""
    from ssl_bench.config import RunConfig

    base = dict(method="simclr", dataset="mog2d", preset="smoke", epochs=2, batch_size=64, train_subset=512,
                eval_train_subset=512, eval_test_subset=256, progress=False, device="cpu",
                precision="fp32")  # hardware-independent numbers; bf16 has its own tests
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture
def tiny():
    return tiny_config
