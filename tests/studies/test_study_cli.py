"""`ssl-bench study` lists its studies; `ssl-bench select` picks configurations without labels."""

import pytest

from ssl_bench.cli import main
from ssl_bench.studies import get, names
from ssl_bench.studies.selection import pick, score


def test_every_study_is_registered_and_listed(capsys):
    assert names() == ["littwin", "mog", "rankme-selection", "vicreg-ablation"]
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    text = capsys.readouterr().out
    assert all(n in text for n in names())


def test_an_unknown_study_names_the_known_ones(capsys):
    with pytest.raises(SystemExit) as e:
        main(["study", "nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "rankme-selection" in err and "littwin" in err
    with pytest.raises(Exception, match="studies: littwin, mog"):
        get("nope")


def test_label_free_scores_pick_the_right_configuration():
    cands = [
        {"metrics": {"rankme.rank": 10.0, "lidar.lidar": 5.0, "alpha-req.alpha": 2.0}, "n": 0},
        {"metrics": {"rankme.rank": 20.0, "lidar.lidar": 1.0, "alpha-req.alpha": 0.8}, "n": 1},
        {"metrics": {"rankme.rank": 15.0, "lidar.lidar": 9.0, "alpha-req.alpha": 1.3}, "n": 2},
    ]
    assert pick(cands, "rankme")["n"] == 1
    assert pick(cands, "lidar")["n"] == 2
    assert pick(cands, "alpha-req")["n"] == 1  # |0.8 - 1| < |1.3 - 1| < |2 - 1|
    assert score("alpha-req", {"alpha-req.alpha": 1.0}) == 0.0
    assert pick([{"metrics": {}}], "rankme") is None


def test_select_on_a_folder_without_runs_is_a_one_line_error(tmp_path, capsys):
    assert main(["select", "--runs", str(tmp_path)]) == 2
    assert "no results.jsonl" in capsys.readouterr().err
