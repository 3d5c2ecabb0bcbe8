"""The speedrun board's pieces in scripts/standard_board.py that need no training: the run's
monitor.csv travels with its rows, and --note ends the table."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _board():
    spec = importlib.util.spec_from_file_location("standard_board", ROOT / "scripts" / "standard_board.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_collect_copies_monitor_csv_and_note_ends_the_table(tmp_path):
    sb = _board()
    src = ROOT / "leaderboards" / "fashion-mnist-rows" / "fashion-mnist-pixels-quick-s0"
    run = tmp_path / "runs" / src.name
    shutil.copytree(src, run)
    (run / "monitor.csv").write_text("seconds,step,epoch,knn,heldout\n12.500,7,1,70.2000,1\n")
    rows = tmp_path / "lb" / "fashion-mnist-rows"
    assert "done in" in sb.collect(run, rows, 0.0, "pixels", 0)
    assert (rows / src.name / "monitor.csv").read_text().splitlines()[1] == "12.500,7,1,70.2000,1"
    assert json.loads((rows / src.name / "results.jsonl").read_text().splitlines()[0])["method"] == "pixels"
    assert sb.main(["--board", "fashion-mnist", "--leaderboards", str(tmp_path / "lb"), "--table-only",
                    "--note", "The CPU was shared."]) == 0
    table = (tmp_path / "lb" / "fashion-mnist.md").read_text()
    assert "| _pixels_ |" in table and table.rstrip().endswith("**Note.** The CPU was shared.")
    assert "**Note.**" not in (tmp_path / "lb" / "fashion-mnist.csv").read_text()
