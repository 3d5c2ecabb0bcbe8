"""What a new user meets first: a run that writes only under its runs folder and ends with a
reproduction check, short console lines, --quiet/--json, exit statuses, "did you mean", and the
small faults of issue 32 (labels of failed runs, thread count after train())."""

import json
import re

import pandas as pd
import pytest

from ssl_bench.cli import main

SMOKE = ["--dataset", "digits", "--preset", "smoke", "--methods", "simclr", "--evaluators", "knn,linear,collapse",
         "--set", "train_subset=512", "--set", "eval_train_subset=512", "--set", "eval_test_subset=256"]


@pytest.mark.slow
def test_run_writes_only_under_runs_and_ends_with_the_reproduction_check(tmp_path, monkeypatch, capsys):
    # a reference board of two seeds, made elsewhere
    assert main(["run", *SMOKE, "--seeds", "0-1", "--no-report", "--runs", str(tmp_path / "ref-runs"),
                 "--leaderboards", str(tmp_path / "ref"), "--quiet"]) == 0
    ref_out = capsys.readouterr().out.strip().splitlines()
    assert len(ref_out) == 1 and " result rows; wrote " in ref_out[0]  # --quiet: the summary line only
    clone = tmp_path / "clone"
    clone.mkdir()
    monkeypatch.chdir(clone)
    assert main(["run", *SMOKE, "--seeds", "2", "--reference", str(tmp_path / "ref"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in clone.iterdir()) == ["runs"]  # nothing outside the runs folder
    assert sorted(p.name for p in (clone / "runs" / "leaderboards").iterdir()) == ["digits.csv", "digits.md"]
    assert (clone / "runs" / "report" / "index.html").is_file()
    lines = out.strip().splitlines()
    assert all(len(ln) <= 200 for ln in lines), max(lines, key=len)
    (run_line,) = [ln for ln in lines if ln.startswith("[simclr seed 2]")]
    assert re.fullmatch(r"\[simclr seed 2\] trained \d+s: k-NN \d+\.\d\d, linear \d+\.\d\d, collapse ok "
                        r"\(\d+s with eval\)", run_line)
    check = lines[lines.index(next(ln for ln in lines if ln.startswith("reproduction check"))):]
    assert check[0] == "reproduction check against digits.csv (95% prediction interval for one new run):"
    # simclr, pixels and random-init are on the reference board with n = 2
    inside = {m: int(k) for m, k in (re.fullmatch(r"  (.+): (\d) of 3 rows inside", ln).groups() for ln in check[1:3])}
    assert set(inside) == {"k-NN top1", "linear top1"}
    assert len([ln for ln in check if ln.startswith("  outside: ")]) == 6 - sum(inside.values())

    # --json: stdout is one JSON object with the same check; the finished run is not trained again
    assert main(["run", *SMOKE, "--seeds", "2", "--reference", str(tmp_path / "ref"), "--json"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    res = json.loads(line)
    assert res["failures"] == [] and res["reproduction"]["boards"] == ["digits.csv"]
    assert res["reproduction"]["metrics"]["knn_top1"]["compared"] == 3
    assert sorted(p.name for p in clone.iterdir()) == ["runs"]


def test_reference_boards_ship_with_the_package_and_cover_the_first_command():
    """The quick board of Fashion-MNIST is found where the package is installed, and its rows of
    one seed's CPU run (the committed cpu-seed0 table) are compared row for row."""
    from ssl_bench.reproduce import reference_boards, reference_dir, run_check

    folder = reference_dir()
    assert folder is not None and (folder / "fashion-mnist.csv").is_file()
    assert folder / "fashion-mnist.csv" in reference_boards(folder, "fashion-mnist")
    run = pd.read_csv(folder / "fashion-mnist-cpu-seed0.csv")
    res = run_check(run, "fashion-mnist", folder)
    assert res is not None and "fashion-mnist.csv" in res.boards
    assert res.compared == {"knn_top1": len(run), "linear_top1": len(run)} and not res.unmatched


def test_prediction_interval_is_wider_than_the_interval_of_the_mean():
    from ssl_bench.stats import prediction_half_width, t_half_width

    # t(0.975, 2) = 4.3027: mean's interval 4.3027 · 1 / √3, one new draw 4.3027 · √(1 + 1/3)
    assert t_half_width(1.0, 3) == pytest.approx(2.4841, abs=1e-4)
    assert prediction_half_width(1.0, 3) == pytest.approx(4.9683, abs=1e-4)
    assert prediction_half_width(1.0, 3, m=3) == pytest.approx(3.5131, abs=1e-4)  # mean of 3 new seeds
    assert prediction_half_width(1.0, 1) != prediction_half_width(1.0, 1)  # NaN: no interval from one seed


def test_run_line_is_short_whatever_the_label():
    from ssl_bench.console import MAX_LINE, failure_line, run_line

    by_ev = {"knn": {"top1": 84.5, **{f"f1_class{i}": 0.5 for i in range(10)}}, "linear": {"top1": 85.99},
             "collapse": {"verdict_code": 1.0, "std_sqrt_d": 0.3}, "rankme": {"rank": 30.1}}
    assert run_line("simclr", 0, "trained", 12.3, 15.2, by_ev) == (
        "[simclr seed 0] trained 12s: k-NN 84.50, linear 85.99, collapse dimensional (15s with eval)")
    long = run_line("m" * 300, 12, "already trained", 1, 2, by_ev)
    assert len(long) <= MAX_LINE and long.endswith("k-NN 84.50, linear 85.99, collapse dimensional (2s with eval)")
    assert len(failure_line("byol", 0, "failed", "x" * 999)) == MAX_LINE


def test_a_failed_run_exits_1_a_usage_error_2(tmp_path, capsys):
    args = ["run", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1", "--evaluators", "knn",
            "--set", "train_subset=256", "--no-baselines", "--no-report", "--no-progress", "--runs", str(tmp_path)]
    assert main([*args, "--methods", "simclr,vicreg", "--opt", "vicreg.sim_weight=2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ssl-bench: failed: 1 run(s) of the sweep failed (vicreg seed 0")
    assert main([*args, "--methods", "simclr", "--seeds", "0", "--num-seeds", "2"]) == 2
    assert "not both" in capsys.readouterr().err


def test_unknown_names_get_a_did_you_mean(capsys):
    assert main(["train", "--method", "simclrr", "--dataset", "mog2d"]) == 2
    assert "did you mean 'simclr'?" in capsys.readouterr().err
    assert main(["eval-embeddings", "x.npz", "--evaluators", "knnn"]) == 2
    assert "did you mean 'knn'?" in capsys.readouterr().err


def test_label_of_a_failed_run_lists_only_keys_that_differ():
    """A failed run's row stores its config before the preset is applied (batch_size=None ...):
    its label must still be the plain method name, and a real difference still shows."""
    import dataclasses

    from ssl_bench.config import RunConfig
    from ssl_bench.leaderboard import config_label

    cfg = RunConfig(method="vicreg", dataset="mog2d", preset="smoke")
    assert config_label("vicreg", cfg.to_dict()) == "vicreg"
    assert config_label("vicreg", dataclasses.replace(cfg, lr=0.5).to_dict()) == "vicreg [lr=0.5]"


def test_train_gives_back_the_thread_count_it_pinned(tmp_path):
    import torch

    from ssl_bench.config import RunConfig
    from ssl_bench.trainer import train

    before = torch.get_num_threads()
    want = 2 if before == 1 else 1
    cfg = RunConfig(method="simclr", dataset="mog2d", preset="smoke", epochs=1, train_subset=256, num_threads=want,
                    progress=False)
    train(cfg, tmp_path)
    assert torch.get_num_threads() == before


def test_json_of_train_and_leaderboard(tmp_path, capsys):
    assert main(["train", "--method", "simclr", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1",
                 "--set", "train_subset=256", "--no-progress", "--runs", str(tmp_path), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["method"] == "simclr" and res["epochs"] == 1 and res["checkpoint"].endswith(".safetensors")
    from ssl_bench.pipeline import evaluate_checkpoint

    evaluate_checkpoint(res["checkpoint"], ["knn"])
    assert main(["leaderboard", "--runs", str(tmp_path), "--out", str(tmp_path / "lb"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == [str(tmp_path / "lb" / "mog2d.csv"),
                                                               str(tmp_path / "lb" / "mog2d.md")]


def test_readme_is_one_screen_to_a_table_rebuilt_from_the_committed_rows(tmp_path, capsys):
    """README: the two commands first, the first table within 40 lines, under 12 KB, and its
    headline block exactly what `ssl-bench leaderboard --readme` makes of the committed standard rows."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text()
    lines = text.splitlines()
    assert lines[2] == "```bash" and lines[3].endswith("ssl-bench run --methods all")
    assert lines[4].endswith("-e \".[test]\" && .venv/bin/python -m pytest -q")
    first_table = next(i for i, ln in enumerate(lines) if ln.startswith("| "))
    assert first_table < 40 and len(text.encode()) < 12 * 1024
    assert lines[first_table] == "| method | backbone | k-NN | linear | 1% | RankMe | collapse | n |"
    copy = tmp_path / "README.md"
    copy.write_text(text.replace(lines[first_table + 2], "| stale | row |"))
    rows = root / "leaderboards" / "fashion-mnist-standard-rows"
    assert main(["leaderboard", "--runs", str(rows), "--out", str(tmp_path / "lb"), "--readme", str(copy)]) == 0
    table = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert [ln for ln in copy.read_text().splitlines() if ln.startswith("| ")] == table
    vicreg = next(ln for ln in table if ln.startswith("| vicreg | cnn-small |"))
    pixels = next(ln for ln in table if ln.startswith("| _pixels_ |"))
    assert float(vicreg.split("|")[3].strip("* ").split()[0]) > float(pixels.split("|")[3].strip("* ").split()[0])
