"""k-NN beyond memory-bound exact search: FAISS IVF vs exact (flat) on synthetic embeddings.

Synthetic SSL-like embeddings: a mixture of ``--centres`` Gaussian clusters in ``--dim``
dimensions (cluster spread ``--spread``), train sets of N rows and ``--queries`` queries from
the same mixture. For each N: exact search time (IndexFlatIP, build + search), IVF time
(k-means training, add, search) and recall@k of IVF vs exact, for each ``--nprobe``.
Uses ``ssl_bench.evaluators.knn.nearest``'s own index construction.

    .venv/bin/python benchmarks/ivf_scale.py --sizes 100000,300000,1000000 --queries 10000
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def mixture(n: int, dim: int, centres: int, spread: float, rng) -> np.ndarray:
    c = rng.standard_normal((centres, dim), dtype=np.float32)
    lab = rng.integers(0, centres, n)
    x = c[lab]
    x += spread * rng.standard_normal((n, dim), dtype=np.float32)
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--centres", type=int, default=1000)
    ap.add_argument("--spread", type=float, default=0.6)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--nprobe", default="0,64", help="comma list; 0 = the automatic default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = ap.parse_args(argv)

    import faiss

    from ssl_bench.evaluators.knn import _faiss_index, _normalize, ivf_defaults

    faiss.omp_set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    # one mixture for every N: the train set of size N is the first N rows (same centres)
    n_max = max(int(float(s)) for s in a.sizes.split(","))
    allx = mixture(n_max + a.queries, a.dim, a.centres, a.spread, rng)
    q = _normalize(allx[n_max:])
    rows = []
    print(f"# load: {os.getloadavg()}")
    print(f"{'N':>9} {'index':>14} {'build s':>8} {'search s':>9} {'total s':>8} {'recall@k':>9}")
    for s in a.sizes.split(","):
        n = int(float(s))
        tr = _normalize(allx[:n])
        t0 = time.perf_counter()
        flat = _faiss_index(tr, "flat", 0, 0)
        t1 = time.perf_counter()
        _, exact = flat.search(q, a.k)
        t2 = time.perf_counter()
        del flat
        row = dict(n=n, index="flat", nlist=None, nprobe=None, build_s=t1 - t0, search_s=t2 - t1, recall=1.0)
        rows.append(row)
        print(f"{n:>9} {'flat':>14} {row['build_s']:>8.2f} {row['search_s']:>9.2f} {t2 - t0:>8.2f} {1.0:>9.4f}", flush=True)
        ivf = None
        for npr in (int(v) for v in a.nprobe.split(",")):
            nlist, npr = ivf_defaults(n, 0, npr)
            if ivf is None:
                t0 = time.perf_counter()
                ivf = _faiss_index(tr, "ivf", nlist, npr)
                build = time.perf_counter() - t0
            ivf.nprobe = npr
            t0 = time.perf_counter()
            _, got = ivf.search(q, a.k)
            search = time.perf_counter() - t0
            rec = float(np.mean([len(np.intersect1d(g, e, assume_unique=True)) for g, e in zip(got, exact)]) / a.k)
            row = dict(n=n, index="ivf", nlist=nlist, nprobe=npr, build_s=build, search_s=search, recall=rec)
            rows.append(row)
            name = f"ivf{nlist}/p{npr}"
            print(f"{n:>9} {name:>14} {build:>8.2f} {search:>9.2f} {build + search:>8.2f} {rec:>9.4f}", flush=True)
        del ivf
    print(f"# load: {os.getloadavg()}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(args=vars(a), rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
