"""ssl-bench study rankme-selection at the tiny budget, and `ssl-bench select` on its runs."""

import csv
import json

from ssl_bench.results import read_rows
import math

import pytest

from ssl_bench.cli import main


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("rankme")
    assert main(["study", "rankme-selection", "--budget", "tiny", "--out", str(out)]) == 0
    summary = list(csv.DictReader(open(out / "rankme-selection-tiny.csv")))
    configs = list(csv.DictReader(open(out / "rankme-selection-tiny-configs.csv")))
    return out, summary, configs


def num(v):
    return float(v) if v not in ("", None) else math.nan


def test_table_has_every_method_pick_regret_and_correlation(study):
    out, summary, configs = study
    assert len(configs) == 6 and {c["method"] for c in configs} == {"simclr", "vicreg", "byol"}
    assert all(c["status"] == "ok" for c in configs)
    by_method = {r["method"]: r for r in summary}
    assert set(by_method) >= {"simclr", "vicreg", "byol"}
    for m in ("simclr", "vicreg", "byol"):
        r = by_method[m]
        cs = [c for c in configs if c["method"] == m]
        # the label pick is the best validation k-NN; the oracle the best test k-NN
        best_val = max(cs, key=lambda c: num(c["val k-NN top1"]))
        assert r["label pick"] == best_val["config"]
        assert num(r["oracle test k-NN"]) == max(num(c["test k-NN top1"]) for c in cs)
        for by, col in (("rankme", "RankMe"), ("lidar", "LiDAR")):
            picked = max(cs, key=lambda c: num(c[col]))
            assert r[f"{by} pick"] == picked["config"]
            assert num(r[f"{by} regret"]) == pytest.approx(
                num(r["label pick test k-NN"]) - num(picked["test k-NN top1"])
            )
        rho = num(r["Spearman rankme vs test k-NN"])
        assert math.isnan(rho) or -1 <= rho <= 1
    assert (out / "rankme-selection-tiny.png").stat().st_size > 1000
    md = (out / "rankme-selection-tiny.md").read_text()
    assert "regret" in md and "load average" in md


def test_test_split_is_evaluated_apart_from_the_validation_split(study):
    out, _, configs = study
    runs = sorted((out / "runs" / "rankme-selection").glob("*/test-results.jsonl"))
    assert len(runs) == 6
    val_rows = read_rows([runs[0].parent / "results.jsonl"])
    test_rows = read_rows([runs[0]])
    assert {r["evaluator"] for r in val_rows} >= {"knn", "rankme", "lidar", "alpha-req"}
    assert {r["evaluator"] for r in test_rows} == {"knn"}


@pytest.mark.parametrize(
    "by,col,best",
    [
        ("rankme", "RankMe", max),
        ("lidar", "LiDAR", max),
        ("alpha-req", "alpha-ReQ", lambda cs, key: min(cs, key=lambda c: abs(key(c) - 1))),
    ],
)
def test_select_picks_the_same_configuration_from_the_runs(study, capsys, by, col, best):
    out, summary, configs = study
    capsys.readouterr()
    assert main(["select", "--runs", str(out / "runs" / "rankme-selection"), "--by", by, "--json"]) == 0
    picks = json.loads(capsys.readouterr().out)
    assert set(picks) == {"simclr", "vicreg", "byol"}
    for m, d in picks.items():
        cs = [c for c in configs if c["method"] == m]
        want = best(cs, key=lambda c: num(c[col]))
        got = d["picked"]["metrics"][
            {"rankme": "rankme.rank", "lidar": "lidar.lidar", "alpha-req": "alpha-req.alpha"}[by]
        ]
        assert got == pytest.approx(num(want[col]))
    assert main(["select", "--runs", str(out / "runs" / "rankme-selection"), "--by", by]) == 0
    assert "picked" in capsys.readouterr().out
