"""k-NN search, same data and k: FAISS (flat and IVF) vs torch matmul vs scikit-learn brute force.

20,000 train x 2,000 queries, 128-d clustered embeddings, k=20, cosine. Every backend's
neighbours are checked against torch's (recall@20; IVF is approximate)."""
import numpy as np
import pytest

from benchutil import per_second
from ssl_bench.evaluators.knn import faiss_available, nearest

K = 20


def _recall(a, b):
    return np.mean([len(np.intersect1d(x, y)) for x, y in zip(a, b)]) / a.shape[1]


@pytest.fixture(scope="module")
def reference(clustered_embeddings):
    train, test = clustered_embeddings
    return nearest(train, test, K, "torch")[1]


def _search(backend, train, test, **kw):
    if backend == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=K, metric="cosine", algorithm="brute", n_jobs=1).fit(train)
        return nn.kneighbors(test)[1]
    return nearest(train, test, K, backend, **kw)[1]


@pytest.mark.parametrize("backend,kw,min_recall", [
    ("faiss", {}, 0.999), ("faiss", {"index": "ivf"}, 0.9), ("torch", {}, 1.0), ("sklearn", {}, 0.999)],
    ids=["faiss-flat", "faiss-ivf", "torch", "sklearn"])
def test_knn_search(benchmark, clustered_embeddings, reference, backend, kw, min_recall):
    if backend == "faiss" and not faiss_available():
        pytest.skip("faiss not installed")
    benchmark.group = "knn"
    train, test = clustered_embeddings
    idx = benchmark.pedantic(lambda: _search(backend, train, test, **kw), rounds=3, iterations=1, warmup_rounds=1)
    rec = _recall(idx, reference)
    benchmark.extra_info["recall_vs_torch"] = rec
    assert rec >= min_recall
    per_second(benchmark, len(test), "queries_per_s")
