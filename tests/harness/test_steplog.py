"""The trainer's per-step log (train_steps.csv) and its logging hook (ssl_bench.steplog)."""
import csv

import pytest

from ssl_bench.steplog import FIELDS, StepLog, read_steps
from ssl_bench.trainer import train


def _rows(run_dir):
    with open(run_dir / "train_steps.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_steps_are_logged_every_log_every_steps_and_at_epoch_ends(tiny, runs):
    events = []
    res = train(tiny(epochs=2, log_every=3), runs, on_log=lambda kind, rec: events.append((kind, dict(rec))))
    rows = _rows(res.run_dir)
    # 512 samples / batch 64 = 8 steps per epoch: steps 3, 6 and the epoch's last (8), twice
    assert [int(r["step"]) for r in rows] == [3, 6, 8, 11, 14, 16]
    assert [float(r["epoch"]) for r in rows] == [0.375, 0.75, 1.0, 1.375, 1.75, 2.0]
    assert list(rows[0]) == list(FIELDS)
    secs = [float(r["seconds"]) for r in rows]
    assert all(b > a for a, b in zip(secs, secs[1:], strict=False)) and secs[0] > 0
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[-1] == 0.0 and max(lrs) > 0  # the cosine schedule ends at 0
    # the per-epoch log is unchanged: one row per epoch, its loss the mean of the epoch's steps
    with open(res.run_dir / "train_log.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]
    # the hook saw the run start, every logged step and every epoch, in order
    kinds = [k for k, _ in events]
    assert kinds == ["start", "step", "step", "step", "epoch", "step", "step", "step", "epoch"]
    start = events[0][1]
    assert start["step"] == 0 and start["run_id"] == res.run_dir.name and start["config"]["method"] == "simclr"
    assert [r["loss"] for k, r in events if k == "step"] == [float(r["loss"]) for r in rows]
    assert events[4][1]["epoch"] == 1 and events[4][1]["step"] == 8 and "loss" in events[4][1]


def test_resumed_run_continues_the_steps_log(tiny, runs, tmp_path):
    whole = train(tiny(epochs=2, log_every=3), tmp_path / "whole")
    cfg = tiny(epochs=2, log_every=3)
    first = train(cfg, runs, stop=lambda epoch, method: True)  # ends after epoch 1
    assert first.epochs == 1 and [int(r["step"]) for r in _rows(first.run_dir)] == [3, 6, 8]
    again = train(cfg, runs, resume=True)
    got, want = _rows(again.run_dir), _rows(whole.run_dir)
    assert [r["step"] for r in got] == [r["step"] for r in want]  # no step twice, none missing
    assert [r["loss"] for r in got[:3]] == [r["loss"] for r in want[:3]]
    assert [float(r["loss"]) for r in got] == pytest.approx([float(r["loss"]) for r in want], rel=1e-5)
    secs = [float(r["seconds"]) for r in got]
    assert all(b > a for a, b in zip(secs, secs[1:], strict=False))  # the clock goes on across the resume


def test_start_drops_rows_after_the_restart_step_and_torn_lines(tmp_path):
    (tmp_path / "train_steps.csv").write_text(
        "step,epoch,loss,lr,seconds\n2,0.5,1.5,0.1,1.0\n4,1.0,1.25,0.05,2.0\n6,1.5,1.0,0.01,3.0\n8,2.0,0.9,0.0,4"
    )
    events = []
    log = StepLog(tmp_path, True, lambda kind, rec: events.append((kind, rec)))
    log.start(4, {"run_id": "r"})
    assert [r["step"] for r in read_steps(tmp_path / "train_steps.csv")] == [2.0, 4.0]
    assert events == [("start", {"run_id": "r", "step": 4})]
    (tmp_path / "train_steps.csv").write_text("step,epoch,loss,lr,seconds\n2,0.5,1.5,0.1,1.0\n4,1.0,1.2")  # torn
    assert [r["step"] for r in read_steps(tmp_path / "train_steps.csv")] == [2.0]
    off = StepLog(tmp_path / "other", False)
    off.start(0, {})
    off.step(1, 4, 1.0, 0.1, 0.5)
    off.flush()
    assert not (tmp_path / "other").exists()  # ranks other than 0 write nothing
