"""Damaged resume state (#35 item 9): a ``resume.pt`` that is no file, a torn ``train_log.csv`` or
a missing checkpoint behind a later resume state is one line, exit 2, before anything is deleted,
rewritten or trained again; what the run's files agree on still resumes."""

import pytest
import torch

from ssl_bench.checkpoint import read_encoder
from ssl_bench.cli import main

ARGS = ["train", "--method", "simclr", "--dataset", "mog2d", "--preset", "smoke", "--batch-size", "64",
        "--set", "train_subset=512", "--set", "precision=fp32", "--no-progress", "--device", "cpu"]


def _train(out, epochs, *extra):
    return main(ARGS + ["--epochs", str(epochs), "--out", str(out), *extra])


def _tree(root):
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _one_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def finished(tmp_path, capsys):
    """A finished 6-epoch run: (runs folder, run folder)."""
    out = tmp_path / "runs"
    assert _train(out, 6) == 0
    capsys.readouterr()
    (run_dir,) = list(out.iterdir())
    return out, run_dir


def _tear_log_inside_epoch(run_dir, epoch):
    log = run_dir / "train_log.csv"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:epoch]) + lines[epoch][:9])  # header + rows before it, half of its row


@pytest.mark.parametrize("damage", ["directory", "dangling-link"])
def test_resume_state_that_is_no_file_fails_before_anything_changes(damage, finished, capsys):
    out, run_dir = finished
    resume = run_dir / "checkpoints" / "resume.pt"
    resume.unlink()
    if damage == "directory":
        resume.mkdir()
        (resume / "data.pkl").write_bytes(b"x")
    else:
        resume.symlink_to(run_dir / "nowhere.pt")
    before = _tree(out)
    assert _train(out, 6, "--resume") == 2
    err = _one_error(capsys)
    assert "resume.pt is " + ("a directory" if damage == "directory" else "not a regular file") in err
    assert "nothing was changed" in err
    assert _tree(out) == before  # every checkpoint and the log kept, nothing trained


def test_torn_log_and_missing_checkpoints_behind_a_later_resume_state(finished, capsys):
    """The reviewer's case: resume.pt after epoch 6, the log torn inside epoch 4's row and the
    checkpoints of epochs 4-6 gone. It said "resumed after epoch 6" and returned epoch 3's."""
    out, run_dir = finished
    for n in (4, 5, 6):
        for suffix in (".safetensors", ".json"):
            (run_dir / "checkpoints" / f"epoch_{n:04d}{suffix}").unlink()
    _tear_log_inside_epoch(run_dir, 4)
    before = _tree(out)
    assert _train(out, 6, "--resume") == 2
    err = _one_error(capsys)
    assert "resume.pt is after epoch 6" in err and "epoch_0006.safetensors is missing" in err
    assert _tree(out) == before


def test_torn_log_behind_a_later_resume_state(finished, capsys):
    out, run_dir = finished
    _tear_log_inside_epoch(run_dir, 4)
    before = _tree(out)
    assert _train(out, 6, "--resume") == 2
    err = _one_error(capsys)
    assert "resume.pt is after epoch 6" in err and "train_log.csv ends at epoch 3 (it has damaged lines)" in err
    assert _tree(out) == before
    # the remedy the message names: without the resume state the run trains again, to the same weights
    (run_dir / "checkpoints" / "resume.pt").unlink()
    assert _train(out, 6, "--resume") == 0
    ref = out.parent / "ref"
    assert _train(ref, 6) == 0
    (ref_dir,) = list(ref.iterdir())
    a, _ = read_encoder(ref_dir / "checkpoints" / "epoch_0006.safetensors")
    b, _ = read_encoder(run_dir / "checkpoints" / "epoch_0006.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r.split(",")[0] for r in (run_dir / "train_log.csv").read_text().splitlines()[1:]] == list("123456")


def test_states_whose_files_agree_still_resume(tmp_path, capsys, monkeypatch):
    """A resume state from before it recorded its checkpoint epoch, and a log whose torn row is
    after the resume state (a kill between the log and the resume state): both resume."""
    from ssl_bench import trainer

    out, real = tmp_path / "runs", trainer.save_resume

    def old_format_then_ctrl_c_after_epoch_2(path, state):
        real(path, {k: v for k, v in state.items() if k != "checkpoint_epoch"})
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_resume", old_format_then_ctrl_c_after_epoch_2)
    assert _train(out, 4) == 130
    monkeypatch.setattr(trainer, "save_resume", real)
    (run_dir,) = list(out.iterdir())
    log = run_dir / "train_log.csv"
    log.write_text(log.read_text() + "3,24,0.0")  # a torn row after the resume state
    capsys.readouterr()
    assert _train(out, 4, "--resume") == 0
    assert "resumed after epoch 2" in capsys.readouterr().out
    assert [r.split(",")[0] for r in log.read_text().splitlines()[1:]] == list("1234")
