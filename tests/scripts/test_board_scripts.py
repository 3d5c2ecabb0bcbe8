"""scripts/standard_board.py and scripts/board_curves.py: the pieces that need no training."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run_folder(out: Path, name: str, method: str, mtime: float) -> Path:
    d = out / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"method": method}))
    os.utime(d, (mtime, mtime))
    return d


def test_run_dir_reads_the_method_from_config_not_from_the_name(tmp_path):
    sb = _load("standard_board")
    now = time.time()
    jepa = _run_folder(tmp_path, "fashion-mnist-jepa-cnn-small-standard-s0-aaaaaaaaaaaa", "jepa", now - 100)
    # newer, and its name also matches the pattern fashion-mnist-jepa-*-standard-s0-*
    masked = _run_folder(tmp_path, "fashion-mnist-jepa-masked-cnn-small-standard-s0-bbbbbbbbbbbb", "jepa-masked", now)
    assert sb.run_dir(tmp_path, "fashion-mnist", "jepa", "standard", 0) == jepa
    assert sb.run_dir(tmp_path, "fashion-mnist", "jepa-masked", "standard", 0) == masked
    assert sb.run_dir(tmp_path, "fashion-mnist", "jepa", "standard", 1) is None


def test_stop_at_in_the_past_starts_nothing_and_still_rebuilds_the_board(tmp_path, monkeypatch, capsys):
    sb = _load("standard_board")

    def no_subprocess(*a, **k):
        raise AssertionError("no run may start after --stop-at")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    lb = tmp_path / "lb"
    rows = lb / "fashion-mnist-rows"
    src = ROOT / "leaderboards" / "fashion-mnist-rows" / "fashion-mnist-pixels-quick-s0"
    shutil.copytree(src, rows / src.name)
    rc = sb.main(["--methods", "simclr,byol", "--preset", "quick", "--board", "fashion-mnist", "--no-baselines",
                  "--out", str(tmp_path / "runs"), "--leaderboards", str(lb), "--stop-at", str(time.time() - 5)])
    assert rc == 1  # two runs not started
    log = capsys.readouterr().out
    assert log.count("NOT STARTED") == 2
    table = (lb / "fashion-mnist.md").read_text()
    assert "| _pixels_ |" in table and "84.59" in table


def test_board_curves_reports_the_committed_standard_runs():
    bc = _load("board_curves")
    md = bc.table(ROOT / "leaderboards" / "fashion-mnist-standard-rows")
    lines = [line for line in md.splitlines() if line.startswith("| vicreg |")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert [c[3] for c in cells] == ["0", "1", "2"]  # one line per seed, in seed order, next to each other
    assert all(c[1] == "cnn-small" and c[2] == "20" and c[4] == "cuda, auto" for c in cells)
    assert [c[-2] for c in cells] == ["87.70", "87.81", "87.54"]  # the final k-NN of each committed run
    assert [c[-1] for c in cells] == ["88.25", "87.82", "87.34"]  # and its linear probe
    assert all("20:" in c[-3] for c in cells)  # the monitor's last logged epoch
    # contrastive-jea's two fp32 seeds (CPU) are one row, its bf16 seeds (GPU) another: not mixed
    cj = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()
          if line.startswith("| contrastive-jea |")]
    assert [(c[3], c[4]) for c in cj] == [("0", "cpu, fp32"), ("1", "cpu, fp32"), ("1", "cuda, auto"),
                                          ("2", "cuda, auto")]


def test_board_curves_refuses_a_doc_without_its_block(tmp_path):
    bc = _load("board_curves")
    doc = tmp_path / "doc.md"
    doc.write_text("no block here\n")
    assert bc.main([str(ROOT / "leaderboards" / "fashion-mnist-standard-rows"), "--doc", str(doc)]) == 2
    assert doc.read_text() == "no block here\n"


@pytest.mark.parametrize(("doc", "rows", "block"), [
    ("docs/standard-leaderboard.md", "leaderboards/fashion-mnist-standard-rows", "curves"),
    ("docs/standard-leaderboard.md", "leaderboards/fashion-mnist-standard-cnn-wide-rows", "curves-cnn-wide"),
    ("docs/standard-leaderboard.md", "leaderboards/fashion-mnist-standard-resnet18-cifar-rows", "curves-resnet18-cifar"),
])
def test_committed_curves_block_is_what_the_script_writes(doc, rows, block, tmp_path):
    bc = _load("board_curves")
    copy = tmp_path / "doc.md"
    shutil.copyfile(ROOT / doc, copy)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert bc.main([rows, "--doc", str(copy), "--block", block]) == 0
    finally:
        os.chdir(cwd)
    written = copy.read_text().replace(f"--doc {copy}", f"--doc {doc}")
    assert written == (ROOT / doc).read_text()
    assert f"<!-- {block} -->" in written and f"<!-- /{block} -->" in written


def _board_with_simclr_seed0(tmp_path, monkeypatch):
    """standard_board, with training forbidden and tmp_path/lb holding the committed quick rows of
    simclr seed 0 (and nothing else)."""
    sb = _load("standard_board")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    rows = tmp_path / "lb" / "fashion-mnist-rows"
    src = next((ROOT / "leaderboards" / "fashion-mnist-rows").glob("fashion-mnist-simclr-cnn-small-quick-s0-*"))
    shutil.copytree(src, rows / src.name)
    return sb


def test_a_method_seed_with_committed_rows_is_not_trained_again(tmp_path, monkeypatch, capsys):
    """The rows folder alone (e.g. a fresh machine with an empty runs/) decides what is left to train."""
    sb = _board_with_simclr_seed0(tmp_path, monkeypatch)
    rc = sb.main(["--methods", "simclr", "--preset", "quick", "--seeds", "0", "--board", "fashion-mnist",
                  "--no-baselines", "--out", str(tmp_path / "runs"), "--leaderboards", str(tmp_path / "lb")])
    assert rc == 0
    assert "simclr seed 0: rows exist, skipped" in capsys.readouterr().out
    assert "| simclr |" in (tmp_path / "lb" / "fashion-mnist.md").read_text()


def test_table_only_rebuilds_the_table_and_trains_nothing_even_where_rows_are_missing(tmp_path, monkeypatch, capsys):
    sb = _board_with_simclr_seed0(tmp_path, monkeypatch)
    args = ["--methods", "simclr,byol", "--preset", "quick", "--seeds", "0,1", "--board", "fashion-mnist",
            "--out", str(tmp_path / "runs"), "--leaderboards", str(tmp_path / "lb"), "--table-only",
            "--generated-by", "a documented command"]
    assert sb.main(args) == 0  # byol and seed 1 have no rows, no baselines either: nothing starts
    table = (tmp_path / "lb" / "fashion-mnist.md").read_text()
    assert "| simclr |" in table and "| byol |" not in table and "a documented command" in table
    assert not (tmp_path / "runs").exists()
    assert sb.main([*args[:-5], "--leaderboards", str(tmp_path / "nothing"), "--table-only"]) == 2
    assert "no rows folder" in capsys.readouterr().err


def test_reproduces_judges_one_new_run_by_the_prediction_interval(tmp_path, capsys):
    """scripts/reproduces.py: a one-seed run is judged by the board's prediction interval for one
    new draw, t·s·sqrt(1 + 1/n) (a: 84.9 is inside 80 ± 4.97 though outside the mean's interval
    80 ± 2.48; b: 71.1 is outside 70 ± 0.99); a row the run lacks (c) and a one-seed board row
    (d: no interval) are left out."""
    import pandas as pd

    board = pd.DataFrame({"label": ["a", "b", "c", "d"], "backbone": ["cnn"] * 4, "n": [3, 3, 3, 1],
                          "knn_top1_mean": [80.0, 70.0, 60.0, 50.0], "knn_top1_std": [1.0, 0.2, 2.0, float("nan")],
                          "knn_top1_n": [3, 3, 3, 1]})
    run = pd.DataFrame({"label": ["a", "b", "d"], "backbone": ["cnn"] * 3, "n": [1, 1, 1],
                        "knn_top1_mean": [84.9, 71.1, 50.0], "knn_top1_std": [float("nan")] * 3, "knn_top1_n": [1] * 3})
    board.to_csv(tmp_path / "board.csv", index=False)
    run.to_csv(tmp_path / "run.csv", index=False)
    assert _load("reproduces").main([str(tmp_path / "board.csv"), str(tmp_path / "run.csv"),
                                     "--metrics", "knn_top1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "  k-NN top1: 1 of 2 rows inside"
    assert out[2] == "  outside: b (cnn) k-NN top1 71.10, reference 70.00 ± 0.99 (n=3, board.csv)"
    assert out[3:] == ["  not on the reference boards: d"]
