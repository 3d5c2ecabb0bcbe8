"""`ssl-bench board`: boards declared as TOML specs, planned, trained only where rows are missing,
stale rows found by their recipe digest, the committed boards rebuilt byte-identical."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ssl_bench.boardspec import builtin_names, load_spec
from ssl_bench.cli import main
from ssl_bench.results import find_result_files, read_rows

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = '''
import torch.nn.functional as F

from ssl_bench.heads import MLPHead
from ssl_bench.method import Method
from ssl_bench.registry import register_method


@register_method("board-toy")
class BoardToy(Method):
    """Two views, cosine agreement with a temperature: just enough to train."""

    defaults = dict(proj_dim=32, temperature=0.5)

    def __init__(self, backbone, hp=None, spec=None):
        super().__init__(backbone, hp, spec)
        self.projector = MLPHead(backbone.out_dim, 64, self.hp.proj_dim)

    def training_step(self, views):
        z1, z2 = (F.normalize(self.projector(self.backbone(v)), dim=1) for v in views)
        return -(z1 * z2).sum(1).mean() / self.hp.temperature, {}
'''
SPEC = """
description = "a plugin method against two of the zoo"
dataset = "digits"
preset = "smoke"
seeds = [0, 1]
evaluators = ["knn"]
plugins = ["toy_plugin.py"]
methods = ["board-toy", "simclr", "vicreg"]

[set]
precision = "fp32"
"""


def _board(tmp: Path, *extra: str) -> int:
    return main(["board", "--spec", str(tmp / "my-board.toml"), "--leaderboards", str(tmp / "lb"),
                 "--out", str(tmp / "runs"), "--no-progress", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The first call on a user's spec: 2 seeds x 3 methods trained, the table written."""
    tmp = tmp_path_factory.mktemp("board")
    (tmp / "toy_plugin.py").write_text(PLUGIN)
    (tmp / "my-board.toml").write_text(SPEC)
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = _board(tmp)
    return tmp, rc, buf.getvalue()


def _runs(lb: Path) -> dict[str, dict]:
    """{run_id: one row} of the board's rows folder."""
    return {r["run_id"]: r for r in read_rows(find_result_files(lb / "my-board-rows"))}


@pytest.mark.slow
def test_first_call_trains_the_six_runs_and_writes_the_table(trained):
    tmp, rc, out = trained
    assert rc == 0, out
    assert "6 runs: 0 done, 6 to train, 0 stale" in out
    runs = _runs(tmp / "lb")
    trainedruns = sorted((r["method"], r["seed"]) for r in runs.values() if r["epochs"] > 0)
    assert trainedruns == [(m, s) for m in ("board-toy", "simclr", "vicreg") for s in (0, 1)]
    assert {r["method"] for r in runs.values() if r["epochs"] == 0} == {"pixels", "random-init"}
    table = pd.read_csv(tmp / "lb" / "my-board.csv")
    assert set(table.method) == {"board-toy", "simclr", "vicreg", "pixels", "random-init"}
    assert (table.set_index("method").loc[["board-toy", "simclr", "vicreg"], "n"] == 2).all()
    assert "ssl-bench board --spec" in (tmp / "lb" / "my-board.md").read_text()
    # every trained row says what ran: the resolved recipe and its digest, versions, fingerprint
    toy = next(r for r in runs.values() if r["method"] == "board-toy")
    assert set(toy["recipe"]) == {"proj_dim", "temperature", "optim.lr", "optim.weight_decay"}
    assert toy["recipe"]["temperature"] == 0.5 and toy["recipe"]["proj_dim"] == 32
    assert toy["recipe_hash"] and toy["evaluator_version"] == "1" and toy["data_fingerprint"]
    assert toy["train_source_digest"] == toy["source_digest"]


@pytest.mark.slow
def test_second_call_trains_nothing_and_says_so(trained, capsys):
    tmp, rc, _ = trained
    before = {p: p.read_bytes() for p in find_result_files(tmp / "lb" / "my-board-rows")}
    assert _board(tmp) == 0
    out = capsys.readouterr().out
    assert "6 runs: 6 done, 0 to train, 0 stale" in out and "nothing to train" in out
    assert {p: p.read_bytes() for p in find_result_files(tmp / "lb" / "my-board-rows")} == before


@pytest.mark.slow
def test_a_changed_default_makes_rows_stale_and_refresh_retrains_them(trained, tmp_path, capsys, monkeypatch):
    """The plugin's default temperature changes between two calls: its two runs are reported stale
    (and not retrained); --refresh retrains them, two at once in child processes, under the new
    recipe; the table then holds one board-toy row, of the new recipe."""
    src, rc, _ = trained
    assert rc == 0
    for name in ("lb", "my-board.toml"):
        (shutil.copytree if (src / name).is_dir() else shutil.copy)(src / name, tmp_path / name)
    (tmp_path / "toy_plugin.py").write_text(PLUGIN.replace("temperature=0.5", "temperature=0.25"))
    old = {k: r["recipe_hash"] for k, r in _runs(tmp_path / "lb").items() if r["method"] == "board-toy"}
    # the parent process has the plugin imported already: change its default there too
    from ssl_bench.registry import METHODS

    monkeypatch.setitem(METHODS.get("board-toy").defaults, "temperature", 0.25)
    assert _board(tmp_path) == 0
    out = capsys.readouterr().out
    assert "6 runs: 4 done, 0 to train, 2 stale" in out and "--refresh retrains" in out
    assert out.count("STALE") == 2 and "board-toy" in out
    assert {k: r["recipe_hash"] for k, r in _runs(tmp_path / "lb").items() if k in old} == old  # nothing retrained

    assert _board(tmp_path, "--refresh", "--jobs", "2") == 0
    out = capsys.readouterr().out
    assert "retrain" in out
    new = {k: r for k, r in _runs(tmp_path / "lb").items() if k in old}
    assert set(new) == set(old) and all(new[k]["recipe_hash"] != old[k] for k in old)
    assert all(r["recipe"]["temperature"] == 0.25 for r in new.values())
    assert _board(tmp_path, "--dry-run") == 0
    assert "6 runs: 6 done, 0 to train, 0 stale" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "lb" / "my-board.csv")
    assert (table.method == "board-toy").sum() == 1 and table.set_index("method").loc["board-toy", "n"] == 2


@pytest.mark.slow
def test_deadline_starts_no_run_that_cannot_finish(trained, tmp_path, capsys):
    """A run whose method's training time (from the rows) would overrun the deadline is not
    started; the call says so and exits 1; a later call would train it."""
    src, rc, _ = trained
    shutil.copytree(src / "lb", tmp_path / "lb")
    shutil.copy(src / "toy_plugin.py", tmp_path / "toy_plugin.py")
    (tmp_path / "my-board.toml").write_text(SPEC.replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    assert _board(tmp_path, "--deadline", "0.01s") == 1
    out = capsys.readouterr().out
    assert "9 runs: 6 done, 3 to train, 0 stale" in out
    assert out.count("NOT STARTED") == 3
    assert not any(r["seed"] == 2 and r["epochs"] > 0 for r in _runs(tmp_path / "lb").values())


COMMITTED = [n for n in builtin_names() if (ROOT / "leaderboards" / f"{n}.md").is_file()]


def test_the_reference_boards_are_committed():
    """A built-in board without a committed table is one not yet run (the GPU speedrun board)."""
    assert {"fashion-mnist", "fashion-mnist-standard", "fashion-mnist-standard-cnn-wide"} <= set(COMMITTED)
    assert set(builtin_names()) - set(COMMITTED) <= {"fashion-mnist-speedrun-gpu", "fashion-mnist-speedrun-cpu"}


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_board_plans_nothing_and_rebuilds_its_table_byte_identical(name, tmp_path, capsys):
    """Each committed board: --dry-run plans nothing to train (no reference row missing either),
    and --table-only rebuilds leaderboards/NAME.{csv,md} byte for byte from the committed rows."""
    lb = tmp_path / "lb"
    lb.mkdir()
    (lb / f"{name}-rows").symlink_to(ROOT / "leaderboards" / f"{name}-rows")
    assert main(["board", name, "--dry-run", "--leaderboards", str(lb)]) == 0
    out = capsys.readouterr().out
    assert " 0 to train, 0 stale" in out and "refs" not in out and "train    " not in out
    assert main(["board", name, "--table-only", "--leaderboards", str(lb)]) == 0
    for suffix in (".csv", ".md"):
        assert (lb / f"{name}{suffix}").read_bytes() == (ROOT / "leaderboards" / f"{name}{suffix}").read_bytes()
    assert f"Generated by `ssl-bench board {name}`" in (lb / f"{name}.md").read_text()


def test_board_list_names_the_committed_boards(capsys):
    assert main(["board", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("fashion-mnist", "fashion-mnist-standard", "fashion-mnist-standard-cnn-wide",
                 "fashion-mnist-standard-resnet18-cifar"):
        assert f"\n{name} " in "\n" + out
        assert load_spec(name).dataset == "fashion-mnist"


@pytest.mark.parametrize("text,msg", [
    ('dataset = "digits"\nmethods = ["simclr"]\nepochs = 3\n', "unknown key(s) ['epochs']"),
    ('dataset = "digits"\nmethods = ["no-such-method"]\n', "no-such-method"),
    ('dataset = "digits"\nmethods = ["simclr"]\n[set]\nseed = 3\n', "set by the spec's own fields"),
    ('dataset = "digits"\nmethods = [{method = "simclr", options = {nope = 1}}]\n', "no option(s) ['nope']"),
    ('dataset = "digits\n', "not valid TOML"),
])
def test_a_bad_spec_is_a_one_line_error(tmp_path, capsys, text, msg):
    (tmp_path / "b.toml").write_text(text)
    assert main(["board", "--spec", str(tmp_path / "b.toml"), "--dry-run", "--leaderboards", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_unknown_board_name_lists_the_built_ins(capsys):
    assert main(["board", "nope", "--dry-run"]) == 2
    assert "built-in boards: fashion-mnist" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_still_going_at_the_deadline_is_stopped(tmp_path, capsys):
    """A run with no time estimate starts (a child process) and is stopped at the deadline: the
    call says so, exits 1 and writes no rows for it."""
    (tmp_path / "b.toml").write_text('dataset = "digits"\npreset = "smoke"\nmethods = ["byol"]\n'
                                     'evaluators = ["knn"]\nreferences = []\n')
    rc = main(["board", "--spec", str(tmp_path / "b.toml"), "--leaderboards", str(tmp_path / "lb"),
               "--out", str(tmp_path / "runs"), "--deadline", "1s", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1 and "STOPPED at the deadline" in out and "(resumable)" in out
    assert not list((tmp_path / "lb").glob("*/*/results.jsonl"))


def test_table_only_rebuilds_the_readme_block(tmp_path, capsys):
    lb = tmp_path / "lb"
    lb.mkdir()
    name = "fashion-mnist-standard-resnet18-cifar"
    (lb / f"{name}-rows").symlink_to(ROOT / "leaderboards" / f"{name}-rows")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- leaderboard:fashion-mnist -->\nold table\n<!-- /leaderboard -->\nrest\n")
    assert main(["board", name, "--table-only", "--leaderboards", str(lb), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("<!-- /leaderboard -->\nrest\n")
    assert f"Generated by `ssl-bench board {name} --table-only --readme {readme}`" in text
    assert "| vicreg | resnet18-cifar |" in text and "| _pixels_ | - |" in text  # headline table, with references
    readme.write_text("no block\n")
    assert main(["board", name, "--table-only", "--leaderboards", str(lb), "--readme", str(readme)]) == 2
    assert "has no <!-- leaderboard:fashion-mnist --> block" in capsys.readouterr().err


def test_board_rows_keep_the_runs_curves_and_a_note_ends_the_table(tmp_path):
    """A run's monitor.csv (time to accuracy) and train_log.csv travel with its rows; a spec's note
    ends the table's Markdown (not its CSV)."""
    from ssl_bench.board import save_board_rows
    from ssl_bench.results import read_rows

    src = ROOT / "leaderboards" / "fashion-mnist-rows" / "fashion-mnist-pixels-quick-s0"
    run = tmp_path / "run"
    run.mkdir()
    (run / "monitor.csv").write_text("seconds,step,epoch,knn,heldout\n12.500,7,1,70.2000,1\n")
    (run / "train_log.csv").write_text("epoch,loss\n1,0.5\n")
    rows = read_rows([src / "results.jsonl"])
    rdir = tmp_path / "lb" / "mine-rows"  # the board of spec file mine.toml
    save_board_rows(rdir, src.name, rows, run)
    assert (rdir / src.name / "monitor.csv").read_text().splitlines()[1] == "12.500,7,1,70.2000,1"
    assert (rdir / src.name / "train_log.csv").is_file()
    assert read_rows([rdir / src.name / "results.jsonl"]) == rows
    spec = tmp_path / "mine.toml"
    spec.write_text('dataset = "fashion-mnist"\nmethods = ["simclr"]\nnote = """The CPU\n  was shared."""\n')
    assert main(["board", "--spec", str(spec), "--table-only", "--leaderboards", str(tmp_path / "lb")]) == 0
    table = (tmp_path / "lb" / "mine.md").read_text()
    assert "| _pixels_ |" in table and table.rstrip().endswith("**Note.** The CPU was shared.")
    assert "**Note.**" not in (tmp_path / "lb" / "mine.csv").read_text()


def test_the_spec_in_docs_cli_parses_and_plans(tmp_path, capsys):
    """The example spec of docs/cli.md is a valid spec: with its plugin written, --dry-run plans
    its runs (2 seeds of my-method and simclr, one of vicreg)."""
    import re

    text = (ROOT / "docs" / "cli.md").read_text()
    spec = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    (tmp_path / "board.toml").write_text(spec)
    (tmp_path / "my_method.py").write_text(
        "from ssl_bench.registry import register_method\nfrom ssl_bench.methods.simclr import SimCLR\n\n"
        "register_method('my-method')(type('MyMethod', (SimCLR,), {}))\n"
    )
    rc = main(["board", "--spec", str(tmp_path / "board.toml"), "--dry-run", "--leaderboards", str(tmp_path / "lb")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "5 runs: 0 done, 5 to train" in out and "vicreg [inv_weight=10.0]" in out
