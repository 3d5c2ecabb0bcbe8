"""The online k-NN monitor reads the training split only; its queries are held out from training
when the run leaves training images out; every check is a row of monitor.csv."""
import csv
import dataclasses

import torch

from ssl_bench.build import load_data, train_split, trained_indices
from ssl_bench.monitor import FIELDS, monitor_split
from ssl_bench.trainer import train


class SplitTripwire:
    """Stands in for the test images: any read of a row fails the test."""

    def __init__(self, like: torch.Tensor) -> None:
        self.shape, self.dtype = like.shape, like.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, _idx):
        raise AssertionError("the k-NN monitor read the test split")

    def __getattr__(self, name):
        raise AssertionError(f"the k-NN monitor touched the test split (.{name})")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_monitor_never_reads_the_test_split(tiny, runs):
    cfg = tiny(method="vicreg", epochs=2, knn_monitor_every=1)
    full = load_data(cfg)
    trap = dataclasses.replace(full, x_test=SplitTripwire(full.x_test), y_test=SplitTripwire(full.y_test))
    res = train(cfg, runs, data=trap)
    mon = _rows(res.run_dir / "monitor.csv")
    assert list(mon[0]) == list(FIELDS) and [int(r["epoch"]) for r in mon] == [1, 2]
    assert [int(r["step"]) for r in mon] == [8, 16]  # 512 / 64 steps per epoch
    assert all(30 < float(r["knn"]) <= 100 and r["heldout"] == "1" for r in mon)  # 8 components: chance 12.5 %
    assert [float(r["knn"]) for r in mon] == [float(r["knn_monitor"]) for r in _rows(res.run_dir / "train_log.csv")]
    secs = [float(r["seconds"]) for r in mon]
    assert 0 < secs[0] < secs[1]


def test_the_queries_are_images_the_run_does_not_train_on(tiny):
    cfg = tiny(train_subset=512).with_preset()
    full = load_data(cfg)
    trained = train_split(cfg, full).pretrain
    assert torch.equal(full.x_train[trained_indices(cfg, full)], trained)  # the same seeded draw
    sub, heldout = monitor_split(full, trained_indices(cfg, full))
    assert heldout and len(sub.x_test) == 500 and len(sub.x_train) == 1000
    rows = {tuple(r.tolist()) for r in trained}
    assert not any(tuple(q.tolist()) in rows for q in sub.x_test)  # no query was trained on
    bank = {tuple(r.tolist()) for r in sub.x_train}
    assert not any(tuple(q.tolist()) in bank for q in sub.x_test)  # nor is one in the bank
    # a run on the whole training split leaves nothing out: the queries are then trained images, flagged
    whole = dataclasses.replace(cfg, train_subset=None)
    sub2, heldout2 = monitor_split(full, trained_indices(whole, full))
    assert not heldout2 and len(sub2.x_test) == 500
    assert sub2.x_test.shape[1:] == full.x_train.shape[1:]
