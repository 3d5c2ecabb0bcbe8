"""Weighted k-NN classifier on frozen embeddings (Wu et al. 2018; the protocol of DINO and
solo-learn): cosine similarities to the k nearest training embeddings vote for their labels with
weight exp(s / T). Defaults k=20, T=0.07. Reports top-1 and top-5 accuracy in percent.

Precision, recall and F1 of the top-1 prediction (the tutorial's k-NN report), in percent:
``precision_macro``, ``recall_macro``, ``f1_macro`` (unweighted means over the classes), and per
class ``precision_class<c>``, ``recall_class<c>``, ``f1_class<c>`` when the data has at most
``per_class_max`` classes (default 20; 0 = macro only: 100 classes would add 300 rows per run).
The classes are those in the test labels or the predictions, as scikit-learn's
``precision_recall_fscore_support`` takes them; a class never predicted (or never true) gets 0
where the ratio is 0/0.

Sweeps (opt-in): ``ks=[10, 50, 200]`` adds ``top1_k10``, ``top1_k50``, ... (each at the default
T) and ``temperatures=[0.02, 0.1]`` adds ``top1_T0.02``, ``top1_T0.1`` (each at the default k);
the neighbours are searched once, for the largest k, and every entry of a sweep reuses them.

Search: FAISS ``IndexFlatIP`` (exact) when faiss imports, else chunked torch matmul; both give
the same neighbours up to float ties. ``index="ivf"`` (FAISS only) uses an inverted-file index
(``IndexIVFFlat``, ``nlist`` k-means cells, ``nprobe`` of them searched per query) for train sets
beyond what exact search handles in time: approximate, recall vs exact is measured by
``benchmarks/ivf_scale.py``.

Embeddings on disk (memory-mapped ``.npy`` of a streamed dataset, :mod:`ssl_bench.ondisk`) are
never loaded whole: ``index="flat"`` is an exact search over train chunks with a running top-k
(torch; on the GPU when there is one), ``index="ivf"`` trains the FAISS index on a seeded
subsample and adds the train rows chunk by chunk (on the GPUs when faiss-gpu is installed). Use
``ivf`` from about N = 1e6 on. Memory: one chunk of train rows plus one of queries, whatever N.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from ssl_bench import ondisk
from ssl_bench.embeddings import Embeddings
from ssl_bench.errors import ConfigError
from ssl_bench.evaluator import Evaluator, Metric
from ssl_bench.registry import register_evaluator


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def ivf_defaults(n_train: int, nlist: int = 0, nprobe: int = 0) -> tuple[int, int]:
    """(nlist, nprobe) for an IVF index over ``n_train`` rows: 0 means automatic, i.e.
    nlist ~ sqrt(N) (at least 39 training points per cell, as FAISS's k-means wants) and
    nprobe = nlist / 16 (at least 1)."""
    if nlist <= 0:
        nlist = int(np.sqrt(n_train))
    nlist = max(1, min(nlist, n_train // 39 or 1))
    if nprobe <= 0:
        nprobe = max(1, nlist // 16)
    return nlist, min(nprobe, nlist)


def _faiss_index(tr: np.ndarray, index: str, nlist: int, nprobe: int, seed: int = 0) -> Any:
    import faiss

    d = tr.shape[1]
    if index == "flat":
        flat = faiss.IndexFlatIP(d)
        flat.add(tr)
        return flat
    nlist, nprobe = ivf_defaults(len(tr), nlist, nprobe)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    # k-means on at most 64 points per cell (seeded subsample): minutes -> seconds at N = 1e6
    n_fit = min(len(tr), 64 * nlist)
    fit = tr if n_fit == len(tr) else tr[np.random.default_rng(seed).choice(len(tr), n_fit, replace=False)]
    ivf.train(fit)
    ivf.nprobe = nprobe
    ivf.add(tr)
    return ivf


def faiss_gpus() -> int:
    """GPUs faiss can use (faiss-gpu installed and a GPU present), else 0."""
    try:
        import faiss
    except ImportError:
        return 0
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _nearest_on_disk(
    train: np.ndarray,
    test: np.ndarray,
    k: int,
    index: str,
    nlist: int,
    nprobe: int,
    query_chunk: int = 1024,
    train_chunk: int = 8192,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, indices) as :func:`nearest`, reading on-disk arrays chunk by chunk."""
    k = min(k, len(train))
    if index == "ivf":
        import faiss

        nlist, nprobe = ivf_defaults(len(train), nlist, nprobe)
        d = train.shape[1]
        ix = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        n_fit = min(len(train), 64 * nlist)
        fit = np.sort(np.random.default_rng(seed).choice(len(train), n_fit, replace=False))
        search = faiss.index_cpu_to_all_gpus(ix) if faiss_gpus() else ix
        search.train(_normalize(ondisk.take_rows(train, fit)))
        for _, rows in ondisk.chunks(train, train_chunk):
            search.add(_normalize(rows))
        faiss.extract_index_ivf(search).nprobe = nprobe
        sims, idx = [], []
        for _, q in ondisk.chunks(test, query_chunk):
            s, j = search.search(_normalize(q), k)
            sims.append(s)
            idx.append(j)
        sims_a, idx_a = np.concatenate(sims), np.concatenate(idx)
        sims_a[idx_a < 0] = -np.inf
        return sims_a, idx_a
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out_s, out_i = [], []
    for _, q in ondisk.chunks(test, query_chunk):
        tq = torch.from_numpy(_normalize(q)).to(dev)
        best_s = torch.full((len(q), 0), -float("inf"), device=dev)
        best_i = torch.zeros((len(q), 0), dtype=torch.int64, device=dev)
        for lo, rows in ondisk.chunks(train, train_chunk):  # similarities: query_chunk x train_chunk floats
            sim = tq @ torch.from_numpy(_normalize(rows)).to(dev).T
            top_s, top_j = sim.topk(min(k, sim.shape[1]), dim=1)
            cat_s, cat_i = torch.cat([best_s, top_s], 1), torch.cat([best_i, top_j + lo], 1)
            best_s, pos = cat_s.topk(min(k, cat_s.shape[1]), dim=1)
            best_i = cat_i.gather(1, pos)
        out_s.append(best_s.cpu())
        out_i.append(best_i.cpu())
    return torch.cat(out_s).numpy(), torch.cat(out_i).numpy()


def nearest(
    train: np.ndarray,
    test: np.ndarray,
    k: int,
    backend: str = "auto",
    chunk: int = 2048,
    index: str = "flat",
    nlist: int = 0,
    nprobe: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, indices) of the k most cosine-similar train rows for each test row.

    ``index="ivf"`` is approximate; a query whose probed cells hold fewer than k rows gets
    index -1 and similarity -inf in the missing slots (zero weight in the k-NN vote).
    """
    if index not in ("flat", "ivf"):
        raise ConfigError(f"unknown k-NN index {index!r}; known: flat, ivf")
    if ondisk.is_on_disk(train):
        if index == "ivf" and not faiss_available():
            raise ConfigError("k-NN index 'ivf' needs the faiss backend (pip install faiss-cpu)")
        return _nearest_on_disk(train, test, k, index, nlist, nprobe)
    tr, te = _normalize(train), _normalize(test)
    k = min(k, len(tr))
    if backend == "auto":
        backend = "faiss" if faiss_available() else "torch"
    if index == "ivf" and backend != "faiss":
        raise ConfigError("k-NN index 'ivf' needs the faiss backend (pip install faiss-cpu)")
    if backend == "faiss":
        sims, idx = _faiss_index(tr, index, nlist, nprobe).search(te, k)
        if index == "ivf":
            sims[idx < 0] = -np.inf
        return sims, idx
    if backend != "torch":
        raise ValueError(f"unknown k-NN backend {backend!r}; known: auto, faiss, torch")
    ttr = torch.from_numpy(tr)
    sims, idx = [], []
    for i in range(0, len(te), chunk):
        s, j = (torch.from_numpy(te[i : i + chunk]) @ ttr.T).topk(k, dim=1)
        sims.append(s)
        idx.append(j)
    return torch.cat(sims).numpy(), torch.cat(idx).numpy()


def knn_scores(
    sims: np.ndarray, idx: np.ndarray, train_y: np.ndarray, num_classes: int, temperature: float
) -> np.ndarray:
    """Class scores: sum over neighbours of exp(sim / T) for each neighbour's class."""
    w = np.exp(sims.astype(np.float64) / temperature)
    scores = np.zeros((len(sims), num_classes))
    labels = train_y[idx]
    np.add.at(scores, (np.arange(len(sims))[:, None].repeat(idx.shape[1], 1), labels), w)
    return scores


def _order(sims: np.ndarray, idx: np.ndarray, train_y: np.ndarray, num_classes: int, temperature: float) -> np.ndarray:
    """Classes by decreasing vote, ties to the lower class index; column 0 is the prediction."""
    return np.argsort(-knn_scores(sims, idx, train_y, num_classes, temperature), axis=1, kind="stable")


def _topk(
    sims: np.ndarray, idx: np.ndarray, train_y: np.ndarray, test_y: np.ndarray, num_classes: int, temperature: float
) -> tuple[float, float]:
    order = _order(sims, idx, train_y, num_classes, temperature)
    top1 = float((order[:, 0] == test_y).mean() * 100)
    k5 = min(5, num_classes)
    top5 = float((order[:, :k5] == test_y[:, None]).any(1).mean() * 100)
    return top1, top5


def precision_recall_f1(test_y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1 (fractions) of predictions ``pred``: ``classes`` are the
    labels in ``test_y`` or ``pred`` (sorted); 0/0 counts as 0 (scikit-learn's zero_division=0)."""
    test_y, pred = np.asarray(test_y, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    classes = np.union1d(test_y, pred)
    tp = np.array([np.sum((pred == c) & (test_y == c)) for c in classes], dtype=np.float64)
    n_pred = np.array([np.sum(pred == c) for c in classes], dtype=np.float64)
    n_true = np.array([np.sum(test_y == c) for c in classes], dtype=np.float64)

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    p, r = ratio(tp, n_pred), ratio(tp, n_true)
    return {"classes": classes, "precision": p, "recall": r, "f1": ratio(2 * p * r, p + r)}


def knn_prf(
    train_x: np.ndarray,
    train_y: ArrayLike,
    test_x: np.ndarray,
    test_y: ArrayLike,
    k: int = 20,
    temperature: float = 0.07,
    backend: str = "auto",
    **search: Any,
) -> dict[str, np.ndarray]:
    """:func:`precision_recall_f1` of the weighted k-NN's top-1 prediction."""
    train_y, test_y = np.asarray(train_y).astype(np.int64), np.asarray(test_y).astype(np.int64)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    sims, idx = nearest(train_x, test_x, k, backend, **search)
    return precision_recall_f1(test_y, _order(sims, idx, train_y, num_classes, temperature)[:, 0])


def prf_metrics(prf: dict[str, np.ndarray], per_class_max: int) -> dict[str, float]:
    """The result-row metrics of :func:`precision_recall_f1` in percent: macro averages, and per
    class when there are at most ``per_class_max`` classes."""
    out = {f"{m}_macro": float(prf[m].mean() * 100) for m in ("precision", "recall", "f1")}
    if len(prf["classes"]) <= per_class_max:
        for m in ("precision", "recall", "f1"):
            out.update({f"{m}_class{int(c)}": float(v * 100) for c, v in zip(prf["classes"], prf[m], strict=True)})
    return out


def knn_accuracy(
    train_x: np.ndarray,
    train_y: ArrayLike,
    test_x: np.ndarray,
    test_y: ArrayLike,
    k: int = 20,
    temperature: float = 0.07,
    backend: str = "auto",
    ks: Sequence[int] = (),
    temperatures: Sequence[float] = (),
    index: str = "flat",
    nlist: int = 0,
    nprobe: int = 0,
    prf: bool = False,
    per_class_max: int = 20,
) -> dict[str, float]:
    """top1 and top5 (and the sweeps); with ``prf`` also :func:`prf_metrics` at (k, T)."""
    train_y, test_y = np.asarray(train_y).astype(np.int64), np.asarray(test_y).astype(np.int64)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    ks = [int(v) for v in ks or ()]
    sims, idx = nearest(train_x, test_x, max([k, *ks]), backend, index=index, nlist=nlist, nprobe=nprobe)
    order = _order(sims[:, :k], idx[:, :k], train_y, num_classes, temperature)
    k5 = min(5, num_classes)
    out = {
        "top1": float((order[:, 0] == test_y).mean() * 100),
        "top5": float((order[:, :k5] == test_y[:, None]).any(1).mean() * 100),
    }
    if prf:
        out.update(prf_metrics(precision_recall_f1(test_y, order[:, 0]), per_class_max))
    for kk in ks:
        out[f"top1_k{kk}"] = _topk(sims[:, :kk], idx[:, :kk], train_y, test_y, num_classes, temperature)[0]
    for t in temperatures or ():
        out[f"top1_T{float(t):g}"] = _topk(sims[:, :k], idx[:, :k], train_y, test_y, num_classes, float(t))[0]
    return out


@register_evaluator("knn")
class KNN(Evaluator):
    defaults = dict(
        k=20,
        temperature=0.07,
        backend="auto",
        ks=[],
        temperatures=[],
        index="flat",
        nlist=0,
        nprobe=0,
        per_class_max=20,
    )
    metrics = (
        Metric(
            "top1", "k-NN top1", "%", True, "weighted k-NN (cosine, vote weight exp(s/T)) top-1 accuracy", headline=True
        ),
        Metric("top5", "k-NN top5", "%", True, "weighted k-NN top-5 accuracy"),
        Metric("top1_k*", "k-NN top1", "%", True, "k-NN top-1 at another k (sweep)", pattern=True),
        Metric("top1_T*", "k-NN top1", "%", True, "k-NN top-1 at another temperature (sweep)", pattern=True),
        Metric(
            "precision_macro",
            "k-NN macro P",
            "%",
            True,
            "precision of the k-NN top-1 prediction, unweighted mean over classes",
        ),
        Metric(
            "recall_macro",
            "k-NN macro R",
            "%",
            True,
            "recall of the k-NN top-1 prediction, unweighted mean over classes",
        ),
        Metric("f1_macro", "k-NN macro F1", "%", True, "F1 of the k-NN top-1 prediction, unweighted mean over classes"),
        Metric(
            "precision_class*", "k-NN precision", "%", True, "k-NN precision of one class", pattern=True, detail=True
        ),
        Metric("recall_class*", "k-NN recall", "%", True, "k-NN recall of one class", pattern=True, detail=True),
        Metric("f1_class*", "k-NN F1", "%", True, "k-NN F1 of one class", pattern=True, detail=True),
    )
    order = 10
    legend_options = ("k", "temperature", "index")

    def evaluate(self, emb: Embeddings) -> dict[str, float]:
        o = self.options
        if o["backend"] not in ("auto", "faiss", "torch"):
            raise ConfigError(f"unknown k-NN backend {o['backend']!r}; known: auto, faiss, torch")
        if o["index"] not in ("flat", "ivf"):
            raise ConfigError(f"unknown k-NN index {o['index']!r}; known: flat, ivf")
        if max([o["k"], *o["ks"]]) > len(emb.train_x):
            raise ConfigError(f"k-NN k = {max([o['k'], *o['ks']])} exceeds the {len(emb.train_x)} training embeddings")
        train_y, test_y = emb.labels()
        return knn_accuracy(
            emb.train_x,
            train_y,
            emb.test_x,
            test_y,
            o["k"],
            o["temperature"],
            o["backend"],
            o["ks"],
            o["temperatures"],
            index=o["index"],
            nlist=o["nlist"],
            nprobe=o["nprobe"],
            prf=True,
            per_class_max=o["per_class_max"],
        )
