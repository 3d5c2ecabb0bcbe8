"""Online k-NN monitor: k-NN top-1 on a fixed small labelled subset during training.

Every ``knn_monitor_every`` epochs (config key; 0 = off, the ``smoke`` default; on in ``quick``,
``speedrun`` and ``full``, and in any preset that does not set it) the trainer embeds two seeded,
fixed subsets of the TRAINING split with the current encoder in eval mode (the network the
checkpoint stores and the final evaluation scores, ``Method.evaluated_as_backbone``: the EMA teacher
or target for DINO and I-JEPA, the online backbone for the others) and logs the weighted
k-NN top-1 accuracy in % (cosine, k = 20, T = 0.07, the ``knn`` evaluator's defaults) of the
``queries`` (500) against the memory bank (``bank``, 1000 other training images with their labels).
The test split is never read: the monitor may steer a run (a curve looked at, a run stopped), and
the house rules keep the test set for the final evaluation.

Held out. The queries are drawn from the training images the run does not train on whenever there
are enough of them (``train_subset`` leaves them out: ``quick``, ``speedrun``): they are then truly
held out, never seen by the encoder. A run that trains on (nearly) every training image (``standard``,
``full``) has none left; its queries are then training images the encoder has seen without their
labels (a transductive k-NN, typically a little optimistic). We chose that over removing 500 images
from every run's training set, which would change the training data of the published boards; each
check records which it was (``heldout`` in ``monitor.csv``). The bank may hold trained images, as
the ``knn`` evaluator's bank (the training split) does.

Each check is also a row ``seconds,step,epoch,knn,heldout`` of ``monitor.csv`` in the run folder
(``seconds``: the run's training seconds so far, which leave out the monitor itself and the
checkpoint writes; a time-to-accuracy curve). The subsets are drawn with their own generator, so
the monitor does not change the training (same weights with it on or off). It is cheap by
construction: 1500 forward passes (about 1-2 s for cnn-small on Fashion-MNIST on a loaded 2-core
CPU) and a 500 x 1000 similarity matrix.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checkpoint import atomic_write_text
from .data import Data, in_memory
from .embeddings import embed_tensor
from .sampling import subsample_indices

if TYPE_CHECKING:
    from .config import RunConfig
    from .method import Method

BANK, QUERIES, SEED = 1000, 500, 12345


#: The columns of ``monitor.csv``.
FIELDS = ("seconds", "step", "epoch", "knn", "heldout")


def monitor_split(
    data: Data, trained: torch.Tensor | None, bank: int = BANK, queries: int = QUERIES, seed: int = SEED
) -> tuple[Data, bool]:
    """(bank as ``x_train``/``y_train`` and queries as ``x_test``/``y_test``, whether the queries are
    held out), both from ``data``'s training split only. ``trained``: the indices of the training
    split the run trains on (None: all). The queries come from the others when at least ``queries``
    are left, else from all training images; the bank from the training images that are not queries."""
    n = len(data.y_train)
    g = torch.Generator().manual_seed(seed)
    unseen = torch.ones(n, dtype=torch.bool)
    if trained is None:
        unseen[:] = False
    else:
        unseen[trained] = False
    heldout = int(unseen.sum()) >= queries
    pool = unseen.nonzero().flatten() if heldout else torch.arange(n)
    q = pool[subsample_indices(len(pool), queries, g)]
    rest = torch.ones(n, dtype=torch.bool)
    rest[q] = False
    others = rest.nonzero().flatten()
    b = others[subsample_indices(len(others), bank, g)]
    x = in_memory(data.x_train, "the k-NN monitor")
    sub = replace(data, x_train=x[b], y_train=data.y_train[b], x_test=x[q], y_test=data.y_train[q], x_pretrain=None)
    return sub, heldout


class KNNMonitor:
    def __init__(
        self,
        data: Data,
        trained: torch.Tensor | None = None,
        bank: int = BANK,
        queries: int = QUERIES,
        seed: int = SEED,
    ) -> None:
        sub, self.heldout = monitor_split(data, trained, bank, queries, seed)
        self.data, self.bank_y, self.query_y = sub, sub.y_train.numpy(), sub.y_test.numpy()

    @torch.no_grad()
    def __call__(self, method: Method, device: torch.device, precision: str = "fp32") -> float:
        from ssl_bench.evaluators.knn import knn_accuracy

        was_training = method.training
        method.eval()
        try:
            # the network the checkpoint stores and the final evaluation scores (DINO's teacher,
            # I-JEPA's target), not necessarily the online one
            with method.evaluated_as_backbone():
                bank, query = (
                    embed_tensor(
                        method.encode, self.data, in_memory(x, "the k-NN monitor"), device, precision=precision
                    )
                    for x in (self.data.x_train, self.data.x_test)
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


def record(path: Path, seconds: float, step: int, epoch: int, knn: float, heldout: bool) -> None:
    """Append one check to ``monitor.csv`` (the whole small file is rewritten atomically)."""
    rows = read_records(path) + [
        {"seconds": f"{seconds:.3f}", "step": step, "epoch": epoch, "knn": f"{knn:.4f}", "heldout": int(heldout)}
    ]
    _write(path, rows)


def read_records(path: Path) -> list[dict]:
    """The rows of ``monitor.csv`` (strings); unreadable rows are dropped."""
    if not Path(path).is_file():
        return []
    try:
        rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"), newline="")))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return [r for r in rows if all(r.get(k) not in (None, "") for k in FIELDS) and str(r["epoch"]).isdigit()]


def truncate(path: Path, epoch: int) -> None:
    """Keep the checks of epochs <= ``epoch`` (a restart trains the later ones again)."""
    if Path(path).is_file():
        rows = read_records(path)
        _write(path, [r for r in rows if int(r["epoch"]) <= epoch])


def _write(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(FIELDS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
