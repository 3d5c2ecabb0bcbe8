"""The ``linear`` evaluator's ``fast`` probe against a converged scikit-learn LogisticRegression.

Same features, same protocol on both sides: per-feature standardised features (training
statistics), the L2 penalty chosen on a held-out, class-stratified 10% of the training split (the
probe's own ``stratified_split``, same seed), then a refit on the whole training split with the
chosen penalty, top-1 on the test split. The penalty grid is the probe's ``weight_decays`` (the
objective mean CE + wd/2·‖W‖²), given to scikit-learn as C = 1 / (wd · n_fit), the same
objective. scikit-learn: ``lbfgs``, ``tol=1e-6``, ``max_iter=5000`` (converged).

Features: ``pixels`` (raw Fashion-MNIST in [0, 1], 784-d) and ``relu128`` (a fixed random
Gaussian projection to 128-d, seed 0, then ReLU). ``--probe-opt key=value`` overrides the probe's
options (e.g. ``max_iter=40 sweep_samples=5000 sweep_iter=25 standardize=false`` for the old
defaults). Times are wall-clock seconds on this machine (noisy on a shared CPU).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/linear_vs_sklearn.py --features pixels,relu128
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ssl_bench.data import load_dataset
from ssl_bench.registry import EVALUATORS


def features(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_dataset("fashion-mnist")
    xtr = data.to_float(data.x_train).flatten(1).numpy()
    xte = data.to_float(data.x_test).flatten(1).numpy()
    if name == "relu128":
        proj = np.random.default_rng(0).standard_normal((xtr.shape[1], 128)).astype(np.float32) / np.sqrt(xtr.shape[1])
        xtr, xte = np.maximum(xtr @ proj, 0), np.maximum(xte @ proj, 0)
    elif name != "pixels":
        raise SystemExit(f"unknown features {name!r}: pixels, relu128")
    return xtr, data.y_train.numpy(), xte, data.y_test.numpy()


def sklearn_probe(xtr, ytr, xte, yte, wds, val_frac=0.1, seed=0) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from ssl_bench.evaluators.linear import stratified_split

    t0 = time.perf_counter()
    fit, val = stratified_split(ytr, val_frac, seed)
    sc = StandardScaler().fit(xtr)
    x, z = sc.transform(xtr), sc.transform(xte)
    val_acc = {}
    for wd in wds:
        clf = LogisticRegression(C=1 / (wd * len(fit)), tol=1e-6, max_iter=5000)
        clf.fit(x[fit], ytr[fit])
        val_acc[wd] = float((clf.predict(x[val]) == ytr[val]).mean() * 100)
    best = max(wds, key=lambda w: (val_acc[w], w))
    clf = LogisticRegression(C=1 / (best * len(x)), tol=1e-6, max_iter=5000).fit(x, ytr)
    top1 = float((clf.predict(z) == yte).mean() * 100)
    return {"top1": top1, "weight_decay": best, "val_top1": val_acc, "seconds": time.perf_counter() - t0}


def probe(xtr, ytr, xte, yte, opts: dict) -> dict:
    ev = EVALUATORS.get("linear")(**opts)
    from ssl_bench.embeddings import Embeddings

    t0 = time.perf_counter()
    m = ev(Embeddings(xtr, ytr, xte, yte, "bench"))
    return {"top1": m["top1"], **ev.details, "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", default="pixels,relu128")
    p.add_argument("--probe-opt", nargs="*", default=[], help="linear evaluator options, key=value (JSON values)")
    p.add_argument("--no-sklearn", action="store_true")
    a = p.parse_args()
    opts = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.probe_opt)}
    for name in a.features.split(","):
        xtr, ytr, xte, yte = features(name)
        res = {"features": name, "probe": probe(xtr, ytr, xte, yte, opts)}
        if not a.no_sklearn:
            wds = opts.get("weight_decays", EVALUATORS.get("linear").defaults["weight_decays"])
            res["sklearn"] = sklearn_probe(xtr, ytr, xte, yte, [float(w) for w in wds])
        print(json.dumps(res, default=str), flush=True)


if __name__ == "__main__":
    main()
