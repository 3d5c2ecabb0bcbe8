"""Shared fixtures of the pytest-benchmark suite (run: see docs/benchmarks.md).

Benchmarks are skipped by the default test run (``--benchmark-skip`` in pyproject's addopts,
and ``testpaths = tests``); ``--benchmark-only`` overrides the skip:

    .venv/bin/python -m pytest benchmarks --benchmark-only --benchmark-json=runs/bench.json

``SSL_BENCH_BENCH_ROUNDS`` (default 3) sets the timed rounds of the heavier benchmarks.
"""
import os

import numpy as np
import pytest
import torch

torch.set_num_threads(int(os.environ.get("SSL_BENCH_BENCH_THREADS", "2")))


@pytest.fixture(scope="session")
def fmnist():
    from ssl_bench.datasets import load_dataset
    from ssl_bench.errors import DatasetNotFoundError

    try:
        return load_dataset("fashion-mnist")
    except DatasetNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def clustered_embeddings():
    """Synthetic SSL-like embeddings: 100 Gaussian clusters in 128-d; 20k train, 2k queries."""
    rng = np.random.default_rng(0)
    c = rng.standard_normal((100, 128), dtype=np.float32)
    lab = rng.integers(0, 100, 22_000)
    x = c[lab] + 0.8 * rng.standard_normal((22_000, 128), dtype=np.float32)
    return x[:20_000], x[20_000:]

