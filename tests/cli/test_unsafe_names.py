"""Names that come from data never become paths unchecked (#35 item 1): a result row's dataset
names a leaderboard file, a config's names make the run id that names a run folder. Anything
but a plain file stem is refused in one line, and nothing is written anywhere."""

import pytest

from ssl_bench.cli import main
from ssl_bench.config import RunConfig
from ssl_bench.names import UnsafeNameError, is_safe_name, safe_name
from ssl_bench.registry import DATASETS
from ssl_bench.results import append_rows, make_rows


def _row(dataset, seed=0):
    cfg = RunConfig(method="simclr", dataset="mog2d", preset="smoke", seed=seed).with_preset()
    (row,) = make_rows({"top1": 50.0 + seed}, evaluator="knn", run_id=cfg.run_id("mlp"), method="simclr",
                       dataset="mog2d", backbone="mlp", preset="smoke", epochs=1, seed=seed,
                       config_hash=cfg.hash(), config=cfg.to_dict(), device="cpu", train_seconds=1.0,
                       eval_seconds=0.1)
    return {**row, "dataset": dataset}


def _tree(root):
    """{path: bytes} of every file under ``root`` (folders as None)."""
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


BAD = ["../victim/NOTES", "ABSOLUTE", "sub/dir", "..", ".hidden", "", "a\\..\\b", "x\ny", "dig its"]


@pytest.mark.parametrize("bad", BAD, ids=[repr(b) for b in BAD])
def test_leaderboard_refuses_a_dataset_that_is_not_a_plain_name(bad, tmp_path, capsys):
    shared, victim = tmp_path / "shared", tmp_path / "victim"
    victim.mkdir()
    (victim / "NOTES.md").write_text("the victim's notes\n")
    bad = str(victim / "NOTES") if bad == "ABSOLUTE" else bad
    runs = shared / "runs"
    append_rows(runs / "good" / "results.jsonl", [_row("mog2d")])
    append_rows(runs / "crafted" / "results.jsonl", [{**_row(bad, seed=1), "run_id": "crafted"}])
    before = _tree(tmp_path)
    assert main(["leaderboard", "--runs", str(runs), "--out", str(shared / "lb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"is {bad!r}: not a plain name" in err[0] and "run 'crafted'" in err[0] and "nothing written" in err[0]
    assert _tree(tmp_path) == before  # nothing written, inside --out or outside it


def test_leaderboard_of_other_datasets_is_not_stopped_by_a_crafted_row(tmp_path):
    runs, lb = tmp_path / "runs", tmp_path / "lb"
    append_rows(runs / "good" / "results.jsonl", [_row("mog2d")])
    append_rows(runs / "crafted" / "results.jsonl", [{**_row("../x", seed=1), "run_id": "crafted"}])
    assert main(["leaderboard", "--runs", str(runs), "--out", str(lb), "--dataset", "mog2d"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lb", "runs"]
    assert sorted(p.name for p in lb.iterdir()) == ["mog2d.csv", "mog2d.md"]


def test_train_refuses_a_run_id_that_is_not_a_plain_name(tmp_path, capsys):
    """A method named ``../../evil`` made ``out/../../evil-...`` before the method was looked up."""
    out = tmp_path / "a" / "b" / "runs"
    rc = main(["train", "--method", "../../../evil", "--dataset", "digits", "--preset", "smoke", "--epochs", "1",
               "--out", str(out), "--no-progress", "--device", "cpu"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a plain name" in err[0] and "evil" in err[0], err
    assert not list(tmp_path.rglob("*evil*"))


def test_safe_name_rule():
    for ok in DATASETS.names() + ["digits-simclr-timm-vit_small_patch16_224.augreg_in21k-smoke-s0-4d1839f21fbb",
                                  "a+b=c", "_x", "9"]:
        assert is_safe_name(ok) and safe_name(ok, "x") == ok
    for bad in ["", ".", "..", ".x", "a/b", "/abs", "a\\b", "a b", "a\0b", "x" * 201, 3, None, ["a"], "é"]:
        assert not is_safe_name(bad)
        with pytest.raises(UnsafeNameError, match="not a plain name"):
            safe_name(bad, "the name")
    assert len(str(pytest.raises(UnsafeNameError, safe_name, "y" * 5000, "w").value)) < 300
