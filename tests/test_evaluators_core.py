"""k-NN and RankMe against independent computations on small known inputs."""
import numpy as np
import pytest

from ssl_bench.embeddings import Embeddings
from ssl_bench.evaluators.knn import faiss_available, knn_accuracy, nearest
from ssl_bench.evaluators.rankme import rankme
from ssl_bench.registry import EVALUATORS


def test_rankme_isotropic_gaussian_is_close_to_d():
    z = np.random.default_rng(0).standard_normal((20_000, 32))
    r = rankme(z)
    assert 31.0 < r <= 32.0


def test_rankme_rank_one_is_one():
    u = np.random.default_rng(1).standard_normal((500, 1))
    v = np.random.default_rng(2).standard_normal((1, 64))
    assert rankme(u @ v) == pytest.approx(1.0, abs=1e-9)


def test_rankme_equal_singular_values_gives_rank_r():
    q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((200, 200)))
    z = q[:, :7] @ np.eye(7, 50)  # 7 orthonormal columns -> 7 equal singular values
    assert rankme(z) == pytest.approx(7.0, rel=1e-9)


def test_rankme_matches_formula():
    z = np.random.default_rng(4).standard_normal((300, 10)) * np.arange(1, 11)
    s = np.linalg.svd(z, compute_uv=False)
    p = s / s.sum()
    assert rankme(z) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-9)


def _brute_knn(train, ty, test, k, t, c):
    tr = train / np.linalg.norm(train, axis=1, keepdims=True)
    te = test / np.linalg.norm(test, axis=1, keepdims=True)
    preds = []
    for q in te:
        s = tr @ q
        nn = np.argsort(-s)[:k]
        votes = np.zeros(c)
        for j in nn:
            votes[ty[j]] += np.exp(s[j] / t)
        preds.append(np.argmax(votes))
    return np.array(preds)


@pytest.mark.parametrize("backend", ["torch"] + (["faiss"] if faiss_available() else []))
def test_knn_matches_brute_force(backend):
    rng = np.random.default_rng(5)
    centers = rng.standard_normal((4, 8)) * 2
    ty = rng.integers(0, 4, 300)
    train = centers[ty] + rng.standard_normal((300, 8))
    sy = rng.integers(0, 4, 100)
    test = centers[sy] + rng.standard_normal((100, 8))
    got = knn_accuracy(train, ty, test, sy, k=7, temperature=0.1, backend=backend)
    want = float((_brute_knn(train, ty, test, 7, 0.1, 4) == sy).mean() * 100)
    assert got["top1"] == pytest.approx(want)
    assert 50 < got["top1"] <= got["top5"] <= 100


def test_faiss_and_torch_find_the_same_neighbours():
    if not faiss_available():
        pytest.skip("faiss not installed")
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((500, 16)).astype(np.float32), rng.standard_normal((50, 16)).astype(np.float32)
    s1, i1 = nearest(a, b, 10, "faiss")
    s2, i2 = nearest(a, b, 10, "torch")
    assert (i1 == i2).mean() > 0.99
    np.testing.assert_allclose(s1, s2, atol=1e-5)


def test_evaluator_registry_and_options():
    ev = EVALUATORS.get("knn")(k=1)
    x = np.eye(3, dtype=np.float32)
    emb = Embeddings(x, np.array([0, 1, 2]), x, np.array([0, 1, 2]))
    assert ev(emb)["top1"] == 100.0
    with pytest.raises(Exception, match="no option"):
        EVALUATORS.get("knn")(kk=3)
