"""Low-shot linear probe: the semi-supervised protocol of the SSL literature (SimCLR, BYOL,
Barlow Twins tables) — a linear classifier trained on 1 % and 10 % of the training labels.

For each fraction f in ``fractions`` a class-balanced, seeded subset of the training embeddings
is drawn (:func:`balanced_subset`: round(f · N / C) samples of every class, at least one, never
more than the class has), a ``linear`` fast-mode probe (:func:`ssl_bench.evaluators.linear.linear_fast`,
its L2 penalty chosen on a held-out part of that subset) is fitted on it, and scored on the whole
test split. Metrics: ``top1_1pct``, ``top1_10pct`` (percent; the name is ``top1_<100·f>pct``).
"""

from __future__ import annotations

import numpy as np

from ssl_bench.embeddings import Embeddings
from ssl_bench.errors import ConfigError
from ssl_bench.evaluator import Evaluator, Metric
from ssl_bench.evaluators.linear import WEIGHT_DECAYS, linear_fast
from ssl_bench.registry import register_evaluator


def balanced_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of round(fraction · N / C) random samples of each class (seeded)."""
    y = np.asarray(y)
    classes = np.unique(y)
    per_class = max(1, int(round(fraction * len(y) / len(classes))))
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(picks))


def metric_name(fraction: float) -> str:
    pct = 100 * fraction
    return f"top1_{int(pct) if float(pct).is_integer() else pct:g}pct"


@register_evaluator("lowshot")
class LowShot(Evaluator):
    defaults = dict(
        fractions=[0.01, 0.1],
        seed=0,
        weight_decays=list(WEIGHT_DECAYS),
        val_frac=0.2,
        max_iter=30,
        sweep_iter=25,
        device="cpu",
    )
    metrics = (
        Metric(
            "top1_1pct",
            "1% top1",
            "%",
            True,
            "the fast linear probe trained on 1% of the train labels (class-balanced), top-1 accuracy",
            headline=True,
        ),
        Metric(
            "top1_10pct",
            "10% top1",
            "%",
            True,
            "the fast linear probe on 10% of the train labels, top-1",
            headline=True,
        ),
        Metric(
            "top1_*pct", "low-shot top1", "%", True, "the fast linear probe on another label fraction", pattern=True
        ),
    )
    order = 30
    legend_options = ("fractions",)
    preset_options = {"smoke": dict(weight_decays=[1e-2, 1e-3], max_iter=30, sweep_iter=20)}

    def evaluate(self, emb: Embeddings) -> dict[str, float]:
        o = self.options
        out, self.details = {}, {}
        train_y, test_y = emb.labels()
        for f in o["fractions"]:
            if not 0 < float(f) <= 1:
                raise ConfigError(f"lowshot: fractions must lie in (0, 1], got {f}")
            idx = balanced_subset(train_y, float(f), o["seed"])
            m, det = linear_fast(
                emb.train_x[idx],
                train_y[idx],
                emb.test_x,
                test_y,
                o["weight_decays"],
                o["val_frac"],
                o["seed"],
                o["max_iter"],
                o["device"],
                sweep_iter=o["sweep_iter"],
            )
            out[metric_name(float(f))] = m["top1"]
            self.details[metric_name(float(f))] = {"n_train": int(len(idx)), **det}
        return out
