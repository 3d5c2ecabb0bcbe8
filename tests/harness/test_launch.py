"""``ssl-bench run --launcher local|slurm``: a submitit job per (method, seed).

The local launcher (submitit.LocalExecutor) must produce the same result rows and leaderboard
as the in-process sweep on the same config, since every job runs the same deterministic code.
"""

from ssl_bench.results import read_rows
import sys

import pandas as pd
import pytest

from ssl_bench.cli import main

SMOKE = ["--methods", "simclr,vicreg", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1",
         "--seeds", "0", "--set", "train_subset=512", "--set", "num_threads=1", "--no-progress"]


def _rows(out):
    rows = read_rows(sorted(out.glob("*/results.jsonl")))
    return {(r["method"], r["seed"], r["evaluator"], r["metric"]): r["value"] for r in rows}


@pytest.mark.slow
def test_local_launcher_matches_in_process_sweep(tmp_path, capsys):
    pytest.importorskip("submitit")
    inproc, local = tmp_path / "inproc", tmp_path / "local"
    assert main(["run", *SMOKE, "--out", str(inproc), "--leaderboards", str(tmp_path / "lb_in")]) == 0
    assert main(["run", *SMOKE, "--launcher", "local", "--timeout-min", "5", "--out", str(local),
                 "--leaderboards", str(tmp_path / "lb_local")]) == 0
    stdout = capsys.readouterr().out
    assert stdout.count("job") >= 2 and "submitted 2 job(s)" in stdout
    a, b = _rows(inproc), _rows(local)
    assert {k[0] for k in b} == {"simclr", "vicreg", "pixels", "random-init"}
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], abs=1e-9), k
    # the jobs really ran out of process: submitit kept their logs
    assert len(list((local / "submitit").glob("*_log.out"))) == 2
    ta = pd.read_csv(tmp_path / "lb_in" / "mog2d.csv")
    tb = pd.read_csv(tmp_path / "lb_local" / "mog2d.csv")
    pd.testing.assert_frame_equal(ta.drop(columns=[c for c in ta if "seconds" in c]),
                                  tb.drop(columns=[c for c in tb if "seconds" in c]))


def test_failed_job_is_one_line_naming_the_job(tmp_path, capsys):
    pytest.importorskip("submitit")
    code = main(["run", "--methods", "simclr", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1",
                 "--set", "train_subset=512", "--opt", "temprature=0.1", "--no-baselines", "--no-progress",
                 "--launcher", "local", "--timeout-min", "5", "--out", str(tmp_path / "runs"),
                 "--leaderboards", str(tmp_path / "lb")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1  # the sweep finished, a job failed: 1, not 2 (a usage error)
    assert err[0].startswith("ssl-bench: failed: ") and "1 of 1 job(s) failed" in err[0] and "simclr seed 0" in err[0]


def test_slurm_launcher_without_sbatch_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    code = main(["run", *SMOKE, "--launcher", "slurm", "--partition", "gpu", "--out", str(tmp_path / "r")])
    assert code == 2 and "needs SLURM's sbatch" in capsys.readouterr().err


def test_launcher_without_submitit_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    code = main(["run", *SMOKE, "--launcher", "local", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install 'ssl-bench[slurm]'" in err
