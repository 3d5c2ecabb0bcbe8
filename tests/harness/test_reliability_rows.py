"""Issue 35 items 6, 7, 8 and 10: crafted checkpoint metadata, rows that disappeared or split
without a word, `leaderboard --readme`, and smaller gaps. Each is a one-line error (status 2) or
a warning naming the file, never a traceback and never a silent rc 0."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from ssl_bench import cli
from ssl_bench.checkpoint import META_KEY, read_encoder
from ssl_bench.config import RunConfig
from ssl_bench.results import make_rows
from ssl_bench.trainer import train


def _main(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(code, err, expect, prefix, words):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == expect, (code, err)
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert all(w in lines[0] for w in words), err
    return lines[0]


def _one_line_error(code, err, *words):
    return _one_line(code, err, 2, "ssl-bench: error: ", words)


def _one_line_failure(code, err, *words):
    """A sweep whose runs failed finished: exit 1 and one 'failed' line (exit 2 is for usage errors)."""
    return _one_line(code, err, 1, "ssl-bench: failed: ", words)


# -- item 6: eval of crafted checkpoints -------------------------------------------------------------
@pytest.fixture(scope="module")
def image_ckpt(tmp_path_factory):
    """A tiny image checkpoint (digits, cnn-small, 1 epoch)."""
    out = tmp_path_factory.mktemp("img") / "runs"
    cfg = tiny_config(dataset="digits", epochs=1, batch_size=128, train_subset=256, evaluators=["knn"])
    return train(cfg, out).checkpoint


def _crafted(src: Path, dst_root: Path, edit) -> Path:
    """A copy of ``src`` (as run/checkpoints/epoch_0001.safetensors) whose metadata ``edit`` changed."""
    from safetensors.torch import save_file

    state, meta = read_encoder(src)
    edit(meta)
    dst = dst_root / "run" / "checkpoints" / src.name
    dst.parent.mkdir(parents=True)
    save_file(state, str(dst), metadata={META_KEY: json.dumps(meta)})
    return dst


def _eval(ck, capsys, *extra):
    return _main(["eval", str(ck), "--evaluators", "knn", "--device", "cpu", *extra], capsys)


def test_metadata_without_run_id(image_ckpt, tmp_path, capsys):
    ck = _crafted(image_ckpt, tmp_path, lambda m: m.pop("run_id"))
    code, _, err = _eval(ck, capsys)
    _one_line_error(code, err, "malformed metadata", "missing 'run_id'")
    assert not (ck.parent.parent / "results.jsonl").exists()


def test_vector_dataset_for_an_image_checkpoint(image_ckpt, tmp_path, capsys):
    ck = _crafted(image_ckpt, tmp_path, lambda m: None)
    code, _, err = _eval(ck, capsys, "--dataset", "mog2d")
    _one_line_error(code, err, "trained on image data of shape [1, 8, 8]", "'mog2d' is vector data of shape [2]")


def test_dataset_kwargs_may_not_name_a_root(image_ckpt, tmp_path, capsys):
    ck = _crafted(image_ckpt, tmp_path, lambda m: m["config"].update(dataset_kwargs={"root": str(tmp_path)}))
    code, _, err = _eval(ck, capsys)
    _one_line_error(code, err, "dataset_kwargs may not set 'root'")


def _build_only_on_meta(monkeypatch):
    """Make a real (not meta-device) build of a method fail the test: crafted metadata must be
    refused before eval builds the model it describes."""
    import torch

    import ssl_bench.embeddings as emb

    real = emb.build_method
    built = []

    def only_meta(cfg, spec):
        if torch.get_default_device().type != "meta":
            built.append(cfg.backbone_kwargs)
            raise AssertionError("a model sized by crafted metadata was built")
        return real(cfg, spec)

    monkeypatch.setattr(emb, "build_method", only_meta)
    return built


@pytest.mark.parametrize("widths", [[600_000, 600_000, 600_000], [8, 8, 8], [32, 64]])
def test_backbone_widths_in_metadata_must_match_the_weights(image_ckpt, tmp_path, capsys, monkeypatch, widths):
    """1.44 TB of widths (or merely other ones) are refused before the model is built."""
    ck = _crafted(image_ckpt, tmp_path, lambda m: m["config"].update(backbone_kwargs={"widths": widths}))
    built = _build_only_on_meta(monkeypatch)
    code, _, err = _eval(ck, capsys)
    line = _one_line_error(code, err, "describes another model than its weights", "nothing was built")
    assert "'features." in line and not built


def test_head_sizes_in_metadata_are_bounded(image_ckpt, tmp_path, capsys, monkeypatch):
    ck = _crafted(image_ckpt, tmp_path,
                  lambda m: m["config"].update(method_kwargs={"proj_hidden_dim": 1 << 20, "proj_dim": 1 << 20}))
    built = _build_only_on_meta(monkeypatch)
    code, _, err = _eval(ck, capsys)
    _one_line_error(code, err, "asks for heads of", "refused before building")
    assert not built


def test_an_honest_checkpoint_still_evaluates(image_ckpt, tmp_path, capsys):
    ck = _crafted(image_ckpt, tmp_path, lambda m: None)
    code, out, err = _eval(ck, capsys, "--json")
    assert code == 0, err
    assert 0 <= json.loads(out)["knn"]["top1"] <= 100


# -- item 6: a damaged collapse spectrum does not kill the report ------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "object"])
def test_report_skips_a_damaged_spectrum_with_a_warning(tmp_path, capsys, damage):
    out = tmp_path / "runs"
    code, _, err = _main(["run", "--methods", "simclr", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1",
                          "--evaluators", "knn,collapse", "--set", "train_subset=512", "--set", "precision=fp32",
                          "--device", "cpu", "--no-progress", "--no-report", "--out", str(out),
                          "--leaderboards", str(tmp_path / "lb")], capsys)
    assert code == 0, err
    spectra = sorted(out.rglob("*collapse-spectrum.npy"))
    assert len(spectra) >= 2  # simclr and the random-init reference
    bad = spectra[0]
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:90])
    else:
        np.save(bad, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    code, stdout, err = _main(["report", "--runs", str(out), "--out", str(tmp_path / "report"), "--quiet"], capsys)
    assert code == 0, err
    assert f"ssl-bench: warning: skipped {bad}" in err
    page = (tmp_path / "report" / "index.html").read_text()
    assert "eigen-spectra" in page and "data:image/png;base64" in page


# -- item 7: rows that split or disappear ----------------------------------------------------------
@pytest.fixture
def odd_seed_diverges():
    """A test plugin that diverges on odd seeds (build_method seeds torch with the run's seed)."""
    import torch

    from ssl_bench import losses
    from ssl_bench.heads import MLPHead
    from ssl_bench.method import Method
    from ssl_bench.registry import METHODS

    class OddSeedNan(Method):
        """Diverges on odd seeds (test plugin)."""

        def __init__(self, backbone, hp=None, spec=None):
            super().__init__(backbone, hp, spec)
            self.projector = MLPHead(backbone.out_dim, 32, 16)
            self.odd = torch.initial_seed() % 2 == 1

        def training_step(self, views):
            z1, z2 = (self.projector(self.backbone(v)) for v in views)
            loss = losses.info_nce(z1, z2, 0.2)
            return (loss * float("nan") if self.odd else loss), {}

    METHODS.register("test-odd-nan", OddSeedNan)
    yield "test-odd-nan"
    METHODS.unregister("test-odd-nan")


def _run_argv(method, out, seeds, *extra):
    return ["run", "--methods", method, "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1", "--seeds", seeds,
            "--evaluators", "knn", "--set", "train_subset=256", "--set", "precision=fp32", "--device", "cpu",
            "--no-progress", "--no-report", "--out", str(out), "--leaderboards", str(out.parent / "lb"), *extra]
    # batch_size and the evaluation subsets are left to the preset: a failure row must resolve them too


def test_a_diverged_seed_lands_in_the_row_of_its_ok_seeds(odd_seed_diverges, tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "runs"
    code, _, err = _main(_run_argv(odd_seed_diverges, out, "0,1,2", "--no-baselines"), capsys)
    _one_line_failure(code, err, f"{odd_seed_diverges} seed 1 diverged", "the leaderboard has the others")
    # one run folder per seed, each the trainer's own (no second folder for the failure row)
    folders = sorted(p.name for p in out.iterdir())
    assert len(folders) == 3 and all((out / f / "config.json").is_file() for f in folders), folders
    table = pd.read_csv(tmp_path / "lb" / "mog2d.csv")
    (row,) = table.to_dict("records")
    assert row["n"] == 2 and row["status"] == "diverged 1/3" and row["label"].startswith(odd_seed_diverges)
    md = (tmp_path / "lb" / "mog2d.md").read_text()
    assert f"] | mlp | smoke | 1 | 2 | diverged 1/3 |" in md


@pytest.mark.parametrize("baselines", [False, True])
def test_when_every_run_diverges_the_message_says_so(odd_seed_diverges, tmp_path, capsys, baselines):
    out = tmp_path / "runs"
    code, _, err = _main(_run_argv(odd_seed_diverges, out, "1,3", *([] if baselines else ["--no-baselines"])), capsys)
    line = _one_line_failure(code, err, "no run succeeded")
    assert "the leaderboard has the others" not in line
    assert (tmp_path / "lb" / "mog2d.md").is_file() == baselines
    assert ("only the reference rows" in line) == baselines


def _rows_file(path: Path, n_seeds=2) -> list[str]:
    cfg = RunConfig(method="simclr", dataset="mog2d", preset="smoke").with_preset().to_dict()
    lines = []
    for seed in range(n_seeds):
        rows = make_rows({"top1": 50.0 + seed}, evaluator="knn", run_id=f"mog2d-simclr-s{seed}", method="simclr",
                         dataset="mog2d", backbone="mlp", preset="smoke", epochs=2, seed=seed, config_hash=f"h{seed}",
                         config={**cfg, "seed": seed}, device="cpu", train_seconds=1.0, eval_seconds=0.1)
        lines += [json.dumps(r) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return lines


def test_rows_that_are_not_rows_are_counted_and_named(tmp_path, capsys):
    good = tmp_path / "runs" / "a" / "results.jsonl"
    lines = _rows_file(good)
    bad_rows = []
    for change in ({"value": "50.0"}, {"value": float("nan")}, {"run_id": None}, {"config": "simclr"}):
        r = json.loads(lines[0])
        r.update(change)
        if r["run_id"] is None:
            del r["run_id"]
        bad_rows.append(json.dumps(r))
    bad = tmp_path / "runs" / "b" / "results.jsonl"
    bad.parent.mkdir()
    bad.write_text("\n".join([lines[1], *bad_rows]) + "\n")
    code, _, err = _main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb")], capsys)
    assert code == 0, err
    (warning,) = [ln for ln in err.splitlines() if ln.strip()]
    assert warning.startswith(f"ssl-bench: warning: {bad}: skipped 4 line(s)")
    for why in ("line 2: 'value' is '50.0'", "line 3: 'value' is nan", "line 4: no run_id", "and 1 more"):
        assert why in warning, warning
    md = (tmp_path / "lb" / "mog2d.md").read_text()
    assert "| simclr | mlp | smoke | 2 | 2 |" in md  # both good seeds, one of them from the damaged file


def test_a_binary_line_names_its_file_and_line_and_the_rest_is_read(tmp_path, capsys):
    a = tmp_path / "runs" / "a" / "results.jsonl"
    _rows_file(a)
    b = tmp_path / "runs" / "b" / "results.jsonl"
    b.parent.mkdir()
    b.write_bytes(b"\xff\xfe\x00\x81 binary\n")
    code, _, err = _main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb")], capsys)
    assert code == 0, err
    assert f"ssl-bench: warning: {b}: skipped 1 line(s) that are not result rows (line 1: not UTF-8 text)" in err
    assert "| simclr | mlp | smoke | 2 | 2 |" in (tmp_path / "lb" / "mog2d.md").read_text()


def test_a_torn_last_line_is_still_skipped_silently(tmp_path, capsys):
    a = tmp_path / "runs" / "a" / "results.jsonl"
    lines = _rows_file(a)
    a.write_text("\n".join(lines) + "\n" + lines[0][:40])
    code, _, err = _main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb")], capsys)
    assert code == 0 and err == "", err


# -- item 8: leaderboard --readme -----------------------------------------------------------------
README_CASES = {
    "missing": "intro\nno block here\n",
    "misspelt": "intro\n<!-- leaderboard:mog2d -->\nold\n<!-- /leaderboard:mog2d -->\nrest\n",
    "unclosed": "intro\n<!-- leaderboard:mog2d -->\nold\nrest\n",
}


@pytest.mark.parametrize("case", sorted(README_CASES))
def test_readme_without_a_good_block_is_one_line(tmp_path, capsys, case):
    _rows_file(tmp_path / "runs" / "a" / "results.jsonl")
    readme = tmp_path / "README.md"
    readme.write_text(README_CASES[case])
    code, _, err = _main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"),
                          "--readme", str(readme)], capsys)
    line = _one_line_error(code, err, str(readme))
    assert {"missing": "no <!-- leaderboard:mog2d -->", "misspelt": "line 4: '<!-- /leaderboard:mog2d -->'",
            "unclosed": "never closed"}[case] in line
    assert readme.read_text() == README_CASES[case]


def test_read_only_readme_is_refused(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root may write a 0444 file")
    _rows_file(tmp_path / "runs" / "a" / "results.jsonl")
    readme = tmp_path / "README.md"
    text = "x\n<!-- leaderboard:mog2d -->\nold\n<!-- /leaderboard -->\n"
    readme.write_text(text)
    readme.chmod(0o444)
    code, _, err = _main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"),
                          "--readme", str(readme)], capsys)
    _one_line_error(code, err, "is read-only")
    assert readme.read_text() == text and not (tmp_path / "lb").exists()


def test_read_only_readme_is_refused_even_for_root(tmp_path, capsys, monkeypatch):
    """The same check where the tests run as root (os.access says yes to root): the mode decides."""
    _rows_file(tmp_path / "runs" / "a" / "results.jsonl")
    readme = tmp_path / "README.md"
    text = "x\n<!-- leaderboard:mog2d -->\nold\n<!-- /leaderboard -->\n"
    readme.write_text(text)
    readme.chmod(0o444)
    real = os.access
    monkeypatch.setattr(os, "access",
                        lambda p, mode, **k: False if Path(p) == readme and mode & os.W_OK else real(p, mode, **k))
    code, _, err = _main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"),
                          "--readme", str(readme)], capsys)
    _one_line_error(code, err, "is read-only")
    assert readme.read_text() == text


def test_good_readme_block_is_refreshed(tmp_path, capsys):
    _rows_file(tmp_path / "runs" / "a" / "results.jsonl")
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- leaderboard:mog2d -->\nold\n<!-- /leaderboard -->\nrest\n")
    code, out, err = _main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"),
                            "--readme", str(readme)], capsys)
    assert code == 0 and str(readme) in out, err
    text = readme.read_text()
    assert "\nold\n" not in text and text.endswith("rest\n")
    assert "| simclr | mlp | **50.50 ± 6.35** | 2 |" in text  # the headline: mean ± 95% CI of 50 and 51, n=2


# -- item 10: smaller gaps ----------------------------------------------------------------------------
def test_dataset_option_stream_must_be_a_boolean(tmp_path, capsys):
    from PIL import Image

    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp_path / "img" / split / c).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "img" / split / c / "0.png")
    code, _, err = _main(["train", "--dataset", "imagefolder", "--data-root", str(tmp_path / "img"), "--set",
                          "dataset_kwargs={stream: maybe, image_size: 8}", "--preset", "smoke", "--device", "cpu",
                          "--no-progress", "--out", str(tmp_path / "runs")], capsys)
    _one_line_error(code, err, "'stream' must be true or false, got 'maybe'")


def test_compare_with_empty_names_is_refused(tmp_path, capsys):
    _rows_file(tmp_path / "runs" / "a" / "results.jsonl")
    code, _, err = _main(["compare", "", "", "--runs", str(tmp_path / "runs")], capsys)
    _one_line_error(code, err, "empty name")


@pytest.mark.parametrize("command", ["config", "eval", "cases"])
def test_a_folder_is_called_a_folder(tmp_path, capsys, command):
    d = tmp_path / "folder.yaml"
    d.mkdir()
    argv = {"config": ["train", "--config", str(d), "--out", str(tmp_path / "runs")],
            "eval": ["eval", str(d), "--evaluators", "knn"],
            "cases": ["check-collapse", "--cases", str(d)]}[command]
    code, _, err = _main(argv, capsys)
    _one_line_error(code, err, f"{d} is a directory")


def test_binary_cases_file_is_one_line_naming_it(tmp_path, capsys):
    p = tmp_path / "binary.yaml"
    p.write_bytes(b"\xff\xfe\x00\x01garbage\x80")
    code, _, err = _main(["check-collapse", "--cases", str(p)], capsys)
    _one_line_error(code, err, f"cases file {p} is not UTF-8 text")


def test_full_disk_names_the_file(tmp_path, capsys, monkeypatch):
    """ENOSPC from a write carries no file name: the one-line error must name the file."""
    out = tmp_path / "runs"
    real_write_bytes = Path.write_bytes

    def full_write_bytes(self, data):  # atomic_write's writers: the disk is full for every temporary file
        if self.name.endswith(".tmp"):
            raise OSError(28, "No space left on device")
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_write_bytes)
    code, _, err = _main(["train", "--dataset", "mog2d", "--preset", "smoke", "--epochs", "1", "--device", "cpu",
                          "--no-progress", "--set", "train_subset=256", "--out", str(out)], capsys)
    line = _one_line_error(code, err, "No space left on device")
    assert str(out) in line and ".safetensors" in line, line


def test_full_disk_on_results_names_the_file(tmp_path):
    import ssl_bench.results as res

    p = tmp_path / "results.jsonl"

    class FullFile:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def write(self, text):
            raise OSError(28, "No space left on device")

    import builtins

    real_open = builtins.open
    try:
        builtins.open = lambda f, m="r", *a, **k: FullFile() if str(f) == str(p) else real_open(f, m, *a, **k)
        with pytest.raises(OSError) as ei:
            res.append_rows(p, [{"a": 1}])
    finally:
        builtins.open = real_open
    assert ei.value.filename == str(p) and ei.value.errno == 28
    assert cli._one_line(ei.value) == f"{p}: No space left on device"


def test_failure_row_keeps_the_trainers_run_folder(tmp_path):
    """The failure row of a run stores the config as trained (preset applied): its run_id is the
    trainer's run folder, its train_hash that of its ok seeds."""
    from ssl_bench.pipeline import failure_row
    from ssl_bench.recipe import resolved_recipe
    from ssl_bench.results import recipe_hash, training_hash
    from ssl_bench.trainer import run_dir_for

    cfg = tiny_config(batch_size=None, lr=None, eval_train_subset=None)
    row = failure_row(cfg, tmp_path, "vector", "diverged", "loss became nan")
    assert row["run_id"] == run_dir_for(cfg.with_preset(), tmp_path, "vector").name
    assert row["config"]["batch_size"] is not None and row["config"]["eval_train_subset"] is not None
    trained = cfg.with_preset()
    rhash = recipe_hash(resolved_recipe(trained), trained.to_dict(), row["backbone"])
    assert rhash and row["train_hash"] == training_hash(trained.to_dict(), rhash)
