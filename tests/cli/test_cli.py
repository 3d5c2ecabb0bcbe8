"""The command line: one-line errors with exit 2, list --json, and a whole run on tiny data."""
import io
import json

from ssl_bench.results import read_rows
import re
import subprocess
import sys

import pandas as pd
import pytest

from ssl_bench.cli import main


def _cli(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "ssl_bench", *args], capture_output=True, text=True, cwd=cwd,
                       timeout=900)  # generous: a loaded 2-core CI runner; the run test trains 2 x 2 x 3 epochs
    return r.returncode, r.stdout, r.stderr


def _one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ssl-bench: error: ")
    return lines[0]


def test_unknown_method_is_one_line_listing_known(tmp_path):
    code, _, err = _cli("train", "--method", "simclrr", "--dataset", "mog2d", "--out", str(tmp_path))
    assert code == 2
    line = _one_line_error(err)
    assert "unknown method 'simclrr'" in line and "byol" in line and "vicreg" in line


def test_missing_dataset_is_one_line_naming_the_fix(tmp_path):
    code, _, err = _cli("train", "--dataset", "cifar10", "--data-root", str(tmp_path / "nope"), "--out", str(tmp_path))
    assert code == 2
    assert "download=True" in _one_line_error(err)


def test_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    bad = tmp_path / "epoch_0001.safetensors"
    bad.write_bytes(b"\x00garbage, not a checkpoint" * 10)
    assert main(["eval", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in _one_line_error(err)


def test_truncated_real_checkpoint_is_one_line(tiny, runs, capsys):
    from ssl_bench.trainer import train

    res = train(tiny(epochs=1), runs)
    data = res.checkpoint.read_bytes()
    res.checkpoint.write_bytes(data[: len(data) // 2])
    assert main(["eval", str(res.checkpoint)]) == 2
    assert "corrupt" in _one_line_error(capsys.readouterr().err)


def test_malformed_config_and_bad_options(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: simclr\nepochs: [oops\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path)]) == 2
    assert "not valid yaml" in _one_line_error(capsys.readouterr().err)
    cfg.write_text("method: simclr\nepochz: 3\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path)]) == 2
    assert "unknown config key(s) ['epochz']" in _one_line_error(capsys.readouterr().err)
    assert main(["train", "--dataset", "mog2d", "--opt", "temprature=0.1", "--out", str(tmp_path)]) == 2
    assert "no option(s) ['temprature']" in _one_line_error(capsys.readouterr().err)
    assert main(["train", "--dataset", "mog2d", "--set", "epochs=-1", "--out", str(tmp_path)]) == 2
    assert ">= 1" in _one_line_error(capsys.readouterr().err)


def test_list_json(capsys):
    for what, expected in [("methods", {"simclr", "byol", "vicreg"}), ("evaluators", {"knn", "rankme"}),
                           ("datasets", {"fashion-mnist", "digits", "mog2d"})]:
        assert main(["list", what, "--json"]) == 0
        names = json.loads(capsys.readouterr().out)
        assert expected <= set(names) and names == sorted(names)


def test_help_everywhere():
    for sub in ([], ["run"], ["train"], ["eval"], ["list"], ["leaderboard"]):
        code, out, _ = _cli(*sub, "--help")
        assert code == 0 and "usage: ssl-bench" in out


@pytest.mark.slow
def test_run_writes_leaderboard_with_baselines_and_provenance(tmp_path):
    out, lb = tmp_path / "runs", tmp_path / "lb"
    code, stdout, err = _cli("run", "--methods", "simclr,vicreg", "--dataset", "digits", "--preset", "smoke",
                             "--epochs", "3", "--seeds", "0,1", "--out", str(out), "--leaderboards", str(lb),
                             "--no-progress")
    assert code == 0, err
    table = pd.read_csv(lb / "digits.csv")
    assert set(table.method) == {"simclr", "vicreg", "pixels", "random-init"}
    assert (table.n == 2).all()
    assert {"knn_top1_mean", "knn_top1_std", "rankme_rank_mean"} <= set(table.columns)
    assert table.set_index("method").loc["pixels", "knn_top1_std"] == 0.0  # pixels do not depend on the seed
    md = (lb / "digits.md").read_text()
    assert "| simclr | cnn-small | smoke | 3 | 2 |" in md
    rows = read_rows(out.glob("*/results.jsonl"))
    need = {"run_id", "method", "dataset", "backbone", "preset", "epochs", "seed", "evaluator", "metric", "value",
            "config_hash", "config", "ssl_bench_version", "torch_version", "git_commit", "device",
            "train_seconds", "eval_seconds", "timestamp"}
    assert rows and all(need <= set(r) for r in rows)
    # a second run resumes finished runs instead of retraining, and the table is unchanged in shape
    code, stdout2, _ = _cli("run", "--methods", "simclr", "--dataset", "digits", "--preset", "smoke", "--epochs", "3",
                            "--seeds", "1", "--out", str(out), "--leaderboards", str(lb), "--no-progress")
    assert code == 0 and "already trained" in stdout2
    assert len(pd.read_csv(lb / "digits.csv")) == 4


def test_eval_json_prints_metrics(tiny, runs, capsys):
    from ssl_bench.trainer import train

    res = train(tiny(epochs=1), runs)
    assert main(["eval", str(res.checkpoint), "--json", "--evaluators", "knn,rankme"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 <= out["knn"]["top1"] <= 100 and 1 <= out["rankme"]["rank"] <= 32
    # embeddings are cached: a second evaluation reuses them
    assert len(list((res.run_dir / "embeddings").glob("*.npz"))) == 1
    assert main(["eval", str(res.checkpoint), "--json"]) == 0
    assert len(list((res.run_dir / "embeddings").glob("*.npz"))) == 1


def test_leaderboard_refreshes_readme_block(tmp_path):
    out, lb = tmp_path / "runs", tmp_path / "lb"
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- leaderboard:mog2d -->\nold\n<!-- /leaderboard -->\nrest\n")
    assert main(["run", "--methods", "simclr", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1",
                 "--out", str(out), "--leaderboards", str(lb), "--no-progress"]) == 0
    assert main(["leaderboard", "--runs", str(out), "--out", str(lb), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "\nold\n" not in text and text.endswith("rest\n")
    assert "| method | backbone | k-NN | linear | 1% | RankMe | collapse | n |" in text  # the short headline table
    assert re.search(r"\| simclr \| mlp \| \d+\.\d\d \| \d+\.\d\d \| \d+\.\d\d \| \d+\.\d\d \| ok \| 1 \|", text)
    assert main(["leaderboard", "--runs", str(tmp_path / "none")]) == 2


@pytest.mark.parametrize("methods, named", [("ijepa", "method ijepa needs"), ("simclr,mae", "method mae needs"),
                                            ("mae,ijepa", "methods mae, ijepa need")])
def test_run_naming_an_image_only_method_on_vectors_is_one_line(tmp_path, methods, named):
    code, out, err = _cli("run", "--dataset", "mog2d", "--methods", methods, "--out", str(tmp_path / "runs"),
                          "--leaderboards", str(tmp_path / "lb"), "--no-progress")
    assert code == 2, err
    line = _one_line_error(err)
    assert f"{named} image data; dataset 'mog2d' is vector data" in line and "--methods all" in line
    assert "simclr" not in line
    assert not (tmp_path / "runs").exists()  # refused before anything is trained or written


def test_train_an_image_only_method_on_vectors_is_one_line(tmp_path):
    code, _, err = _cli("train", "--method", "mae", "--dataset", "mog2d", "--out", str(tmp_path))
    assert code == 2
    assert "method mae needs image data; dataset 'mog2d' is vector data" in _one_line_error(err)


def test_run_all_skips_the_methods_that_cannot_take_the_data_kind(tmp_path, monkeypatch, capsys):
    import ssl_bench.leaderboard
    import ssl_bench.pipeline
    from ssl_bench.registry import METHODS

    seen = {}

    def fake_sweep(methods, base, seeds, out, **kw):  # the sweep itself is tested above; here: what it is given
        seen.update(methods=methods, kind=kw["data"].kind)
        return [], []

    monkeypatch.setattr(ssl_bench.pipeline, "run_sweep", fake_sweep)
    monkeypatch.setattr(ssl_bench.leaderboard, "write_leaderboards", lambda *a, **k: [])
    argv = ["run", "--methods", "all", "--out", str(tmp_path / "runs"), "--no-report", "--no-progress"]
    assert main(argv + ["--dataset", "mog2d"]) == 0
    out = capsys.readouterr().out
    image_only = sorted(m for m in METHODS.names() if METHODS.get(m).data_kinds == ("image",))
    assert {"ijepa", "mae"} <= set(image_only)
    assert seen["kind"] == "vector" and seen["methods"] == [m for m in METHODS.names() if m not in image_only]
    notes = [ln for ln in out.splitlines() if ln.startswith("[methods]")]
    assert notes == [f"[methods] skipped {', '.join(image_only)}: image data only, and mog2d is vector data; "
                     f"running the other {len(seen['methods'])}"]
    assert main(argv + ["--dataset", "digits"]) == 0  # image data: nothing skipped, no note
    assert seen["methods"] == METHODS.names() and "[methods]" not in capsys.readouterr().out
    assert main(["list", "methods"]) == 0  # the listing says which methods are image-only
    listed = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert {m for m, ln in listed.items() if ln.endswith("[image data only]")} == set(image_only)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _bar_states(err: str, desc: str) -> list[tuple[int, int, str]]:
    """(runs done, total, ETA) of every drawing of the sweep bar in a captured terminal stream."""
    return [(int(n), int(t), eta) for n, t, eta in
            re.findall(rf"{re.escape(desc)}:\s+\d+%\|[^|]*\| (\d+)/(\d+) runs \[\d\d:\d\d elapsed, ETA ([^,\]]+)", err)]


def test_run_shows_one_bar_over_methods_and_seeds_with_an_eta_above_the_epoch_bar(tmp_path, monkeypatch, capsys):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setenv("COLUMNS", "160")
    common = ["--dataset", "mog2d", "--preset", "smoke", "--epochs", "1", "--evaluators", "knn", "--no-report",
              "--set", "train_subset=512", "--set", "eval_train_subset=512", "--set", "eval_test_subset=256",
              "--leaderboards", str(tmp_path / "lb")]
    assert main(["run", "--methods", "simclr,vicreg", "--seeds", "0-1", "--out", str(tmp_path / "a")] + common) == 0
    err, out = term.getvalue(), capsys.readouterr().out
    states = _bar_states(err, "mog2d 2 methods x 2 seeds")
    assert states and states[0][:2] == (0, 4) and states[-1][:2] == (4, 4)
    assert sorted({n for n, _, _ in states}) == [0, 1, 2, 3, 4]  # one step per (method, seed)
    assert {eta for n, _, eta in states if n == 0} == {"?"}  # no estimate before a run has finished
    assert all(re.fullmatch(r"\d\d:\d\d", eta) for n, _, eta in states if n >= 1)
    # the per-epoch bar opens below the sweep bar (tqdm's position 1: drawn a line down, then cursor up)
    first_epoch_bar = err.index("simclr ep 1/1")
    assert err.index("0/4 runs") < first_epoch_bar and "\x1b[A" in err[first_epoch_bar:]
    # log lines go to stdout (through tqdm.write), not into the bars
    assert out.count("] trained ") == 4 and "] trained " not in err

    # --no-progress: no bar at all; a stream that is not a terminal: none either, and no crash
    for flags, stream in ((["--no-progress"], _Terminal()), ([], io.StringIO())):
        monkeypatch.setattr(sys, "stderr", stream)
        out_dir = tmp_path / f"b{len(flags)}"
        assert main(["run", "--methods", "simclr", "--seeds", "0", "--out", str(out_dir)] + common + flags) == 0
        assert "runs [" not in stream.getvalue() and " ep 1/1" not in stream.getvalue()
        assert "[simclr seed 0] trained " in capsys.readouterr().out
