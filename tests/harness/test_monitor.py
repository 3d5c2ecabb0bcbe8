"""The online k-NN monitor reads the training split only; its queries are held out from training
when the run leaves training images out; every check is a row of monitor.csv."""
import csv
import dataclasses

import pytest
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


def test_the_monitor_embeds_the_network_the_evaluation_scores(tiny, monkeypatch):
    """DINO's checkpoint stores, and the evaluators score, the EMA teacher: the monitor embeds the
    teacher too, not the student, and leaves the student in place as ``backbone``."""
    from ssl_bench import monitor as monitor_mod
    from ssl_bench.build import load_data
    from ssl_bench.monitor import KNNMonitor
    from ssl_bench.trainer import build_method, data_spec

    cfg = tiny(method="dino")
    data = load_data(cfg)
    torch.manual_seed(0)
    m = build_method(cfg, data_spec(data))
    assert m.evaluated == "teacher"
    with torch.no_grad():  # a student that has moved away from its teacher, as after training steps
        for p in m.backbone.parameters():
            p.add_(0.5 * torch.randn_like(p))
    student = m.backbone
    seen = []
    real = monitor_mod.embed_tensor

    def spy(encode, d, x, device, **kw):
        out = real(encode, d, x, device, **kw)
        seen.append((x, out))
        return out

    monkeypatch.setattr(monitor_mod, "embed_tensor", spy)
    mon = KNNMonitor(data, bank=64, queries=32)
    m.train()
    acc = mon(m, torch.device("cpu"))
    assert 0 <= acc <= 100 and len(seen) == 2
    assert m.backbone is student and m.training  # the student is back, in train mode
    m.eval()
    with torch.no_grad():
        for x, z in seen:
            xb = data.normalize(data.to_float(x))
            assert torch.allclose(torch.from_numpy(z), m.target_backbone(xb), atol=1e-6)
            assert not torch.allclose(torch.from_numpy(z), m.backbone(xb), atol=1e-3)


def test_a_monitored_run_logs_the_knn_of_its_checkpointed_encoder(tiny, runs, tmp_path):
    """End to end: the k-NN that monitor.csv records at the last epoch is that of the encoder the
    checkpoint stores (DINO's teacher), on the monitor's own split, and the monitor (which swaps the
    teacher in and out) leaves the trained weights as they are without it. (On mog2d the student
    scores the same; the test above is the one that tells the two networks apart.)"""
    from ssl_bench.checkpoint import read_encoder
    from ssl_bench.embeddings import embed_tensor, load_method_from_checkpoint
    from ssl_bench.evaluators.knn import knn_accuracy

    cfg = tiny(method="dino", epochs=2, knn_monitor_every=1)
    full = load_data(cfg)
    res = train(cfg, runs, data=full)
    off = train(dataclasses.replace(cfg, knn_monitor_every=0), tmp_path / "off", data=full)
    a, _ = read_encoder(res.checkpoint)
    b, _ = read_encoder(off.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())
    logged = float(_rows(res.run_dir / "monitor.csv")[-1]["knn"])
    sub, _ = monitor_split(full, trained_indices(cfg, full))
    m, _, _ = load_method_from_checkpoint(res.checkpoint, torch.device("cpu"))
    m.eval()
    with torch.no_grad():
        bank, query = (embed_tensor(m.encode, sub, x, torch.device("cpu")) for x in (sub.x_train, sub.x_test))
    acc = knn_accuracy(bank, sub.y_train.numpy(), query, sub.y_test.numpy(), k=20, temperature=0.07, backend="torch")
    assert logged == pytest.approx(acc["top1"], abs=1e-4)
