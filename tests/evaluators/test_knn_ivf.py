"""The IVF option of k-NN search: approximate neighbours with high recall vs an exact numpy search."""
import numpy as np
import pytest

from ssl_bench.errors import ConfigError
from ssl_bench.evaluators.knn import faiss_available, ivf_defaults, knn_accuracy, nearest
from ssl_bench.registry import EVALUATORS

pytestmark = pytest.mark.skipif(not faiss_available(), reason="faiss not installed")


def _clustered(n, d=32, centres=50, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    lab = rng.integers(0, centres, n)
    return (c[lab] + 0.35 * rng.standard_normal((n, d))).astype(np.float32), lab


def _exact(train, test, k):
    tr = train / np.linalg.norm(train, axis=1, keepdims=True)
    te = test / np.linalg.norm(test, axis=1, keepdims=True)
    return np.argsort(-(te @ tr.T), axis=1, kind="stable")[:, :k]


def _recall(got, want):
    return np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want)])


def test_ivf_recall_vs_exact_is_high_on_clustered_data():
    x, _ = _clustered(8000)
    train, test = x[:7000], x[7000:]
    want = _exact(train, test, 10)
    sims, got = nearest(train, test, 10, "faiss", index="ivf", nlist=64, nprobe=8)
    assert _recall(got, want) > 0.9
    # and the returned similarities are the true cosines of the returned rows
    tr = train / np.linalg.norm(train, axis=1, keepdims=True)
    te = test / np.linalg.norm(test, axis=1, keepdims=True)
    ok = got >= 0
    true = np.einsum("qd,qkd->qk", te, tr[np.where(ok, got, 0)])
    np.testing.assert_allclose(sims[ok], true[ok], atol=1e-4)


def test_ivf_probing_every_cell_is_exact():
    x, _ = _clustered(3000, seed=1)
    train, test = x[:2500], x[2500:]
    _, got = nearest(train, test, 5, "faiss", index="ivf", nlist=16, nprobe=16)
    assert _recall(got, _exact(train, test, 5)) == pytest.approx(1.0, abs=2e-3)  # float ties only


def test_ivf_one_probe_loses_recall_more_probes_win_it_back():
    x, _ = _clustered(6000, centres=200, seed=2)
    train, test = x[:5000], x[5000:]
    want = _exact(train, test, 20)
    r1 = _recall(nearest(train, test, 20, "faiss", index="ivf", nlist=64, nprobe=1)[1], want)
    r16 = _recall(nearest(train, test, 20, "faiss", index="ivf", nlist=64, nprobe=16)[1], want)
    assert r1 < r16 and r16 > 0.95


def test_knn_accuracy_with_ivf_matches_flat_on_clusters():
    x, lab = _clustered(6000, seed=3)
    y = lab % 10
    flat = knn_accuracy(x[:5000], y[:5000], x[5000:], y[5000:], k=10, backend="faiss")
    ivf = EVALUATORS.get("knn")(k=10, index="ivf", nlist=50, nprobe=10)
    from ssl_bench.embeddings import Embeddings

    got = ivf(Embeddings(x[:5000], y[:5000], x[5000:], y[5000:]))
    assert abs(got["top1"] - flat["top1"]) <= 1.0 and flat["top1"] > 90


def test_ivf_defaults_respect_faiss_training_minimum():
    assert ivf_defaults(1_000_000) == (1000, 62)
    nlist, nprobe = ivf_defaults(1000)
    assert nlist == 1000 // 39 and 1 <= nprobe <= nlist
    assert ivf_defaults(10, nlist=100, nprobe=500) == (1, 1)


def test_bad_index_options_are_config_errors():
    x = np.ones((50, 4), np.float32)
    with pytest.raises(ConfigError, match="unknown k-NN index"):
        nearest(x, x, 3, index="hnsw")
    with pytest.raises(ConfigError, match="needs the faiss backend"):
        nearest(x, x, 3, backend="torch", index="ivf")


def test_ivf_missing_neighbours_get_zero_weight():
    x, lab = _clustered(400, d=8, centres=10, seed=4)
    # one probed cell of ~40 rows cannot supply 100 neighbours: FAISS pads with -1
    sims, idx = nearest(x, x[:20], 100, "faiss", index="ivf", nlist=10, nprobe=1)
    assert (idx < 0).any()
    assert np.all(np.isneginf(sims[idx < 0])) and np.all(np.isfinite(sims[idx >= 0]))
    acc = knn_accuracy(x, lab, x[:20], lab[:20], k=100, backend="faiss", index="ivf", nlist=10, nprobe=1)
    assert acc["top1"] > 90  # padded slots cast no vote (label of row -1 would be arbitrary)
