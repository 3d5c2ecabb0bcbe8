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


def _blobs_with_confusion(seed=7):
    """4 classes; 2 and 3 share a centre, so their precision and recall differ from the others'."""
    rng = np.random.default_rng(seed)
    centers = np.array([[6.0, 0, 0], [0, 6.0, 0], [0, 0, 6.0], [0, 0, 6.0]])
    ty, sy = rng.integers(0, 4, 400), rng.integers(0, 4, 200)
    return (centers[ty] + rng.standard_normal((400, 3)), ty, centers[sy] + rng.standard_normal((200, 3)), sy)


@pytest.mark.parametrize("backend", ["torch"] + (["faiss"] if faiss_available() else []))
def test_knn_precision_recall_f1_match_sklearn_on_the_brute_force_prediction(backend):
    from sklearn.metrics import precision_recall_fscore_support

    train, ty, test, sy = _blobs_with_confusion()
    got = EVALUATORS.get("knn")(k=7, temperature=0.1, backend=backend)(Embeddings(train, ty, test, sy))
    pred = _brute_knn(train, ty, test, 7, 0.1, 4)
    p, r, f, _ = precision_recall_fscore_support(sy, pred, zero_division=0)
    for c in range(4):
        assert got[f"precision_class{c}"] == pytest.approx(100 * p[c])
        assert got[f"recall_class{c}"] == pytest.approx(100 * r[c])
        assert got[f"f1_class{c}"] == pytest.approx(100 * f[c])
    for name, v in (("precision", p), ("recall", r), ("f1", f)):
        assert got[f"{name}_macro"] == pytest.approx(100 * v.mean())
    assert got["f1_class0"] > 90 and got["f1_class2"] < 75  # the shared centre confuses 2 and 3 only
    assert got["top1"] == pytest.approx(100 * (pred == sy).mean())


def test_knn_precision_recall_by_hand_and_classes_never_predicted():
    from ssl_bench.evaluators.knn import precision_recall_f1

    # true 0 0 1 1 2, predicted 0 1 1 1 1: class 2 is never predicted (precision 0/0 -> 0)
    m = precision_recall_f1(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 1]))
    assert list(m["classes"]) == [0, 1, 2]
    np.testing.assert_allclose(m["precision"], [1.0, 0.5, 0.0])  # class 1: predicted 4 times, right twice
    np.testing.assert_allclose(m["recall"], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(m["f1"], [2 / 3, 2 / 3, 0.0])


def test_knn_per_class_rows_are_capped_and_declared_as_detail():
    train, ty, test, sy = _blobs_with_confusion()
    emb = Embeddings(train, ty, test, sy)
    knn = EVALUATORS.get("knn")
    capped = knn(per_class_max=3)(emb)  # 4 classes > 3: macro only
    assert {"precision_macro", "recall_macro", "f1_macro"} <= set(capped)
    assert not [m for m in capped if "_class" in m]
    assert capped["f1_macro"] == knn()(emb)["f1_macro"]
    for name in ("f1_class3", "precision_class0", "recall_class12"):
        info = knn.metric(name)
        assert info.detail and info.unit == "%" and info.higher_is_better and not info.headline
    assert not knn.metric("f1_macro").headline and not knn.metric("f1_macro").detail
    with pytest.raises(Exception, match="per_class_max"):
        knn(per_class_max=-1)


def test_text_summaries_leave_out_per_class_values_and_count_them():
    from ssl_bench.evaluator import format_metrics

    train, ty, test, sy = _blobs_with_confusion()
    m = EVALUATORS.get("knn")()(Embeddings(train, ty, test, sy))
    line = format_metrics("knn", m, prefix="knn.")
    assert "knn.f1_macro=" in line and "_class" not in line
    assert line.endswith("+12 per-class values in the result rows")
