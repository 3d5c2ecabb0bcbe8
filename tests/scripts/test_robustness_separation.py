"""benchmarks/robustness_separation.py: the pairs a robustness metric separates that k-NN ties,
from a board CSV's mean, std and n, with Welch's test."""
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "robustness_separation.py"


def _row(label, knn, knn_sd, rob, rob_sd, backbone="cnn-small", n=3):
    return {"label": label, "backbone": backbone,
            "knn_top1_mean": knn, "knn_top1_std": knn_sd, "knn_top1_n": n,
            "robustness_knn_corrupt_mean": rob, "robustness_knn_corrupt_std": rob_sd, "robustness_knn_corrupt_n": n}


def test_a_pair_tied_by_knn_and_separated_by_robustness_is_named(tmp_path):
    csv = tmp_path / "board.csv"
    pd.DataFrame([
        _row("a", 83.0, 0.5, 60.0, 0.3),
        _row("b", 83.2, 0.5, 55.0, 0.3),   # k-NN: tie with a (p ~ 0.65); robustness: 5 points lower
        _row("c", 90.0, 0.2, 55.2, 0.3),   # k-NN separates c from a and b; robustness ties c and b
        _row("random-init", 83.1, 0.5, 40.0, 0.3),  # a reference: never compared
        _row("d", 83.1, 0.5, 70.0, 0.3, backbone="vit-mini"),  # another backbone: never compared
    ]).to_csv(csv, index=False)
    p = subprocess.run([sys.executable, str(SCRIPT), str(csv), "--metrics", "robustness_knn_corrupt"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    sep = lines[1:lines.index(next(ln for ln in lines if ln.startswith("tied by")))]
    assert len(sep) == 1 and sep[0].startswith("  robustness_knn_corrupt: a > b by 5.00")
    assert "separated by a robustness metric, tied by knn_top1: 1 (pair, metric) of 3 pairs x 1 metrics" in lines[0]
    tied = lines[lines.index(next(ln for ln in lines if ln.startswith("tied by"))) + 1:]
    assert [t.split(":")[1].split(" by")[0].strip() for t in tied] == ["c > b"]  # c vs a differ in both


def test_a_missing_column_is_one_line_and_exit_2(tmp_path):
    csv = tmp_path / "board.csv"
    pd.DataFrame([_row("a", 83.0, 0.5, 60.0, 0.3)]).to_csv(csv, index=False)
    p = subprocess.run([sys.executable, str(SCRIPT), str(csv)], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and p.stderr.strip() == f"{csv}: no column robustness_linear_corrupt_mean"
