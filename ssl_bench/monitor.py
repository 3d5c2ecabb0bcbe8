"""Online k-NN monitor: k-NN top-1 on a fixed small labelled subset during training.

Every ``knn_monitor_every`` epochs (config key; 0 = off, the ``smoke`` default; on in ``quick``
and ``full``, and in any preset that does not set it) the trainer embeds a seeded, fixed subset
of the training split (the memory bank, ``bank`` samples with their labels) and of the test
split (``queries`` samples) with the current
encoder in eval mode, and logs the weighted k-NN top-1 accuracy in % (cosine, k = 20, T = 0.07,
the ``knn`` evaluator's defaults) as ``knn_monitor`` in ``train_log.csv``. The subset is drawn
with its own generator, so the monitor does not change the training (same weights with it on or
off). It is cheap by construction: 1500 forward passes and a 500 x 1000 similarity matrix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .data import Data, in_memory
from .embeddings import embed_tensor

if TYPE_CHECKING:
    from .config import RunConfig
    from .method import Method

BANK, QUERIES, SEED = 1000, 500, 12345


class KNNMonitor:
    def __init__(self, data: Data, bank: int = BANK, queries: int = QUERIES, seed: int = SEED) -> None:
        sub = data.subset(bank, queries, seed=seed)
        self.data, self.bank_y, self.query_y = sub, sub.y_train.numpy(), sub.y_test.numpy()

    @torch.no_grad()
    def __call__(self, method: Method, device: torch.device, precision: str = "fp32") -> float:
        from ssl_bench.evaluators.knn import knn_accuracy

        was_training = method.training
        method.eval()
        try:
            bank = embed_tensor(
                method.encode, self.data, in_memory(self.data.x_train, "the k-NN monitor"), device, precision=precision
            )
            query = embed_tensor(
                method.encode, self.data, in_memory(self.data.x_test, "the k-NN monitor"), device, precision=precision
            )
        finally:
            method.train(was_training)
        return knn_accuracy(bank, self.bank_y, query, self.query_y, k=20, temperature=0.07, backend="torch")["top1"]


def every(cfg: RunConfig) -> int:
    """The config's ``knn_monitor_every``; a preset that does not set it (None) gets 1: the
    monitor is on unless a preset (``smoke``) or the user turns it off with 0."""
    return 1 if cfg.knn_monitor_every is None else int(cfg.knn_monitor_every)


def due(epoch: int, every: int, epochs: int) -> bool:
    """Whether the monitor runs after ``epoch`` (1-based): every ``every`` epochs and at the last one."""
    return every > 0 and (epoch % every == 0 or epoch == epochs)
