"""ssl_bench.sampling: the one seeded-subsampling helper, and that nothing else hand-writes one."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_bench.sampling import is_subsampled, subsample, subsample_indices

ROOT = Path(__file__).resolve().parents[2]


def test_torch_stream_is_a_seeded_sorted_randperm_prefix():
    idx = subsample_indices(100, 10, 3)
    expected = torch.randperm(100, generator=torch.Generator().manual_seed(3))[:10]
    assert torch.equal(idx, expected.sort().values)
    assert torch.equal(subsample_indices(100, 10, 3, sort=False), expected)
    assert torch.equal(subsample_indices(100, 10, torch.Generator().manual_seed(3)), idx)
    assert len(set(idx.tolist())) == 10 and not torch.equal(idx, subsample_indices(100, 10, 4))


def test_numpy_stream_is_a_seeded_choice_without_replacement():
    idx = subsample_indices(100, 10, np.random.default_rng(3))
    expected = np.random.default_rng(3).choice(100, 10, replace=False)
    assert isinstance(idx, np.ndarray) and (idx == np.sort(expected)).all()
    assert (subsample_indices(100, 10, np.random.default_rng(3), sort=False) == expected).all()


@pytest.mark.parametrize("n", [None, 5, 6])
def test_nothing_dropped_gives_every_index_and_leaves_the_generator_alone(n):
    g = torch.Generator().manual_seed(0)
    assert torch.equal(subsample_indices(5, n, g), torch.arange(5))
    assert torch.equal(torch.randperm(7, generator=g), torch.randperm(7, generator=torch.Generator().manual_seed(0)))
    assert (subsample_indices(5, n, np.random.default_rng(0)) == np.arange(5)).all()
    assert not is_subsampled(5, n) and is_subsampled(5, 4)


def test_subsample_rows():
    x = torch.arange(20.0).view(10, 2)
    assert subsample(x, None, 0) is x and subsample(x, 10, 0) is x  # no copy when nothing is dropped
    rows = subsample(x, 4, 1)
    assert torch.equal(rows, x[subsample_indices(10, 4, 1)])
    a = np.arange(20).reshape(10, 2)
    assert (subsample(a, 4, np.random.default_rng(1)) == a[subsample_indices(10, 4, np.random.default_rng(1))]).all()
    assert (subsample(a, 4, 1) == a[subsample_indices(10, 4, 1).numpy()]).all()  # numpy rows, torch stream


#: Sampling that is not a seeded subsample of a dataset or of embeddings, or a file another branch
#: owns; each with its reason.
ALLOWED = {
    "evaluators/knn.py": "k-means training points of the IVF index; to move to the helper (#19)",
}
HAND_WRITTEN = re.compile(r"randperm\([^)]*\)[^#\n]*\[:|\.choice\([^#\n]*replace=False")


def test_no_hand_written_subsampling():
    found = []
    for folder in ("ssl_bench", "evaluators", "methods"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "ssl_bench/sampling.py" or rel in ALLOWED:
                continue
            found += [
                f"{rel}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1) if HAND_WRITTEN.search(line)
            ]
    assert not found, f"use ssl_bench.sampling.subsample / subsample_indices instead: {found}"
    stale = [rel for rel in ALLOWED if not HAND_WRITTEN.search((ROOT / rel).read_text())]
    assert not stale, f"{stale} no longer hand-write a sample: remove them from ALLOWED"
