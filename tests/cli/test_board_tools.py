"""`ssl-bench board NAME --curves` and `--check RUN.csv`: the board tools that were scripts, through
results.read_rows and the rows' train_hash."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ssl_bench.board_tools import curves_table
from ssl_bench.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _cells(md: str, method: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith(f"| {method} |")]


def test_curves_of_the_committed_standard_runs():
    md = curves_table(ROOT / "leaderboards" / "fashion-mnist-standard-rows")
    cells = _cells(md, "vicreg")
    assert [c[3] for c in cells] == ["0", "1", "2"]  # one line per seed, in seed order, next to each other
    assert all(c[1] == "cnn-small" and c[2] == "20" and c[4] == "cuda, auto" for c in cells)
    assert [c[-2] for c in cells] == ["87.70", "87.81", "87.54"]  # the final k-NN of each committed run
    assert [c[-1] for c in cells] == ["88.25", "87.82", "87.34"]  # and its linear probe
    assert all("20:" in c[-3] for c in cells)  # the monitor's last logged epoch
    # contrastive-jea's two fp32 seeds (CPU) are one configuration, its bf16 seeds (GPU) another
    cj = [(c[3], c[4]) for c in _cells(md, "contrastive-jea")]
    assert sorted(cj) == [("0", "cpu, fp32"), ("1", "cpu, fp32"), ("1", "cuda, auto"), ("2", "cuda, auto")]
    assert cj.index(("1", "cpu, fp32")) == cj.index(("0", "cpu, fp32")) + 1  # a configuration's seeds together


def test_curves_refuse_a_doc_without_its_block(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text("no block here\n")
    assert main(["board", "fashion-mnist-standard", "--curves", "--doc", str(doc)]) == 2
    assert doc.read_text() == "no block here\n" and "no <!-- curves -->" in capsys.readouterr().err


@pytest.mark.parametrize(("board", "block"), [
    ("fashion-mnist-standard", "curves"),
    ("fashion-mnist-standard-cnn-wide", "curves-cnn-wide"),
    ("fashion-mnist-standard-resnet18-cifar", "curves-resnet18-cifar"),
])
def test_committed_curves_block_is_what_the_command_writes(board, block, tmp_path):
    doc = "docs/standard-leaderboard.md"
    copy = tmp_path / "doc.md"
    shutil.copyfile(ROOT / doc, copy)
    argv = ["board", board, "--curves", "--doc", str(copy), "--leaderboards", str(ROOT / "leaderboards")]
    assert main(argv + (["--block", block] if block != "curves" else [])) == 0
    assert copy.read_text().replace(f"--doc {copy}", f"--doc {doc}") == (ROOT / doc).read_text()


def test_check_judges_one_new_run_by_the_prediction_interval(tmp_path, capsys):
    """A one-seed run is judged by the board's prediction interval for one new draw,
    t·s·sqrt(1 + 1/n) (a: 84.9 is inside 80 ± 4.97 though outside the mean's interval 80 ± 2.48;
    b: 71.1 is outside 70 ± 0.99); a row the board lacks with n >= 2 (d: one seed, no interval) is
    listed as not on the board."""
    board = pd.DataFrame({"label": ["a", "b", "c", "d"], "backbone": ["cnn"] * 4, "n": [3, 3, 3, 1],
                          "knn_top1_mean": [80.0, 70.0, 60.0, 50.0], "knn_top1_std": [1.0, 0.2, 2.0, float("nan")],
                          "knn_top1_n": [3, 3, 3, 1]})
    run = pd.DataFrame({"label": ["a", "b", "d"], "backbone": ["cnn"] * 3, "n": [1, 1, 1],
                        "knn_top1_mean": [84.9, 71.1, 50.0], "knn_top1_std": [float("nan")] * 3, "knn_top1_n": [1] * 3})
    board.to_csv(tmp_path / "fashion-mnist.csv", index=False)
    run.to_csv(tmp_path / "run.csv", index=False)
    assert main(["board", "fashion-mnist", "--check", str(tmp_path / "run.csv"), "--metrics", "knn_top1",
                 "--leaderboards", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "  k-NN top1: 1 of 2 rows inside"
    assert out[2] == "  outside: b (cnn) k-NN top1 71.10, reference 70.00 ± 0.99 (n=3, fashion-mnist.csv)"
    assert out[3:] == ["  not on the reference boards: d"]


def test_check_of_the_committed_cpu_run_against_the_quick_board(capsys):
    """The reproduction check of the committed one-seed CPU table against the quick board."""
    assert main(["board", "fashion-mnist", "--check", str(ROOT / "leaderboards" / "fashion-mnist-cpu-seed0.csv"),
                 "--leaderboards", str(ROOT / "leaderboards")]) == 0
    out = capsys.readouterr().out
    assert "prediction interval for one new run" in out and "k-NN top1: " in out
