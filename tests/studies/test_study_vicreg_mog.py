"""ssl-bench study vicreg-ablation and mog at the tiny budget; the MoG structure scores."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from ssl_bench.cli import main
from ssl_bench.studies.mog import global_structure, local_structure, tutorial_agrees
from ssl_bench.studies.vicreg_ablation import VARIANTS


def test_vicreg_ablation_tiny_writes_every_variant(tmp_path):
    assert main(["study", "vicreg-ablation", "--budget", "tiny", "--seeds", "0", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "vicreg-ablation-tiny.csv")))
    refs = rows[len(VARIANTS) :]
    rows = rows[: len(VARIANTS)]
    assert [r["variant"] for r in rows] == [v[0] for v in VARIANTS]
    # the untrained backbone and the pixels, evaluated at the same budget, as reference rows
    assert [r["variant"].split()[0] for r in refs] == ["_random-init_", "_pixels_"]
    assert all(0 <= float(r["k-NN top1"]) <= 100 for r in refs)
    assert (tmp_path / "vicreg-ablation-tiny.png").stat().st_size > 1000
    for r, (_, opts, paper) in zip(rows, VARIANTS):
        assert float(r["mu (var)"]) == opts.get("var_weight", 25.0) and r["paper (ImageNet linear top-1)"] == paper
        assert 0 <= float(r["k-NN top1"]) <= 100 and 0 <= float(r["linear top1"]) <= 100
        assert r["backbone verdict"] in ("ok", "dimensional", "complete")
        assert r["projector verdict"] in ("ok", "dimensional", "complete")
    assert "| Inv + Var + Cov (VICReg) |" in (tmp_path / "vicreg-ablation-tiny.md").read_text()
    # one seed: no Welch test against the full loss (NaN), and none for the full loss itself
    assert all(r["k-NN top1 p vs VICReg"] == "nan" for r in rows[:-1]) and rows[-1]["k-NN top1 p vs VICReg"] == ""


def test_vicreg_ablation_second_call_reuses_the_projector_verdicts(tmp_path, monkeypatch):
    """A second call rereads the finished runs: the projector verdicts come from each run folder,
    not from embedding every training image again, and the table is the same; a retrained run
    (a newer training state) is read again."""
    import ssl_bench.collapse

    args = ["study", "vicreg-ablation", "--budget", "tiny", "--seeds", "0", "--out", str(tmp_path)]
    assert main(args) == 0
    first = (tmp_path / "vicreg-ablation-tiny.csv").read_text()
    caches = sorted(tmp_path.rglob("projector-verdict.json"))
    assert len(caches) == len(VARIANTS)
    real = ssl_bench.collapse.head_embeddings
    calls: list[Path] = []

    def counted(cfg, data, run_dir, head):
        calls.append(Path(run_dir))
        return real(cfg, data, run_dir, head)

    monkeypatch.setattr(ssl_bench.collapse, "head_embeddings", counted)
    assert main(args) == 0
    assert calls == [] and (tmp_path / "vicreg-ablation-tiny.csv").read_text() == first
    state = caches[0].parent / "checkpoints" / "resume.pt"
    os.utime(state, ns=(state.stat().st_atime_ns, state.stat().st_mtime_ns + 1))  # as if trained again
    assert main(args) == 0
    assert calls == [caches[0].parent] and (tmp_path / "vicreg-ablation-tiny.csv").read_text() == first


def test_vicreg_ablation_default_budget_is_the_whole_quick_preset():
    """The committed table is at the quick budget of `ssl-bench run` (#16): 20,000 training images,
    2 epochs at batch 128, every train and test image embedded."""
    from ssl_bench.config import PRESETS
    from ssl_bench.studies.vicreg_ablation import _base

    cfg = _base("default", None)
    quick = PRESETS["quick"]
    assert (cfg.preset, cfg.train_subset, cfg.epochs, cfg.batch_size) == (
        "quick",
        quick["train_subset"],
        quick["epochs"],
        quick["batch_size"],
    )
    assert cfg.eval_train_subset is None and cfg.eval_test_subset is None and cfg.precision == "fp32"


def test_mog_tiny_writes_the_table(tmp_path):
    assert main(["study", "mog", "--budget", "tiny", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "mog-tiny.csv")))
    assert [r["method"] for r in rows] == ["contrastive-jea", "dsm", "jepa-pairwise", "jepa-masked", "ema-jepa", "jepa"]
    for r in rows:
        assert 0 <= float(r["k-NN top1"]) <= 100
        assert -1 <= float(r["global structure"]) <= 1 and 0 <= float(r["local structure"]) <= 1
        assert r["collapse verdicts"] in ("ok", "dimensional", "complete")
        sd = float(r["global structure sd"]) if r["global structure sd"] not in ("", "—") else None
        assert r["agrees"] == tutorial_agrees(r["method"], float(r["global structure"]), sd)
    assert rows[0]["tutorial: global structure?"] == "local only" and rows[-1]["agrees"] == "—"


def test_tutorial_reading_follows_the_cut():
    """The tutorial's "local only" agrees only below the cut, "yes" only at or above it, and "some
    global awareness" from half of it; a method outside its table or a missing score reads "—",
    a mean within one sd of the cut "tie"."""
    assert [tutorial_agrees("contrastive-jea", g) for g in (0.36, 0.54)] == ["yes", "no"]
    assert [tutorial_agrees("jepa-pairwise", g) for g in (-0.05, 0.7)] == ["no", "yes"]
    assert [tutorial_agrees("jepa-masked", g) for g in (0.2, 0.3)] == ["no", "yes"]
    assert tutorial_agrees("jepa", 0.9) == "—" and tutorial_agrees("ema-jepa", float("nan")) == "—"
    # the seeds decide only when the cut is more than one sd away from the mean
    assert [tutorial_agrees("dsm", 0.50, sd) for sd in (0.14, 0.0)] == ["tie", "no"]
    assert tutorial_agrees("jepa-masked", 0.84, 0.04) == "yes"


@pytest.fixture
def ring():
    from ssl_bench.datasets import load_dataset

    d = load_dataset("mog2d", n_train=64, n_test=800)
    return d.x_test.numpy(), d.y_test.numpy(), np.asarray(d.info["centers"])


def test_structure_scores_tell_a_faithful_embedding_from_a_scrambled_one(ring):
    x, y, centers = ring
    rng = np.random.default_rng(0)
    # the centre itself + the within-component offset, lifted to 3-D so cosine keeps both
    faithful = np.concatenate([x, np.ones((len(x), 1)) * 8.0], 1)
    assert global_structure(faithful, y, centers) > 0.8
    assert local_structure(x, faithful, y) > 0.5
    noise = rng.standard_normal((len(x), 8))
    assert abs(global_structure(noise, y, centers)) < 0.1
    assert local_structure(x, noise, y) < 0.2
    perm = rng.permutation(len(centers))  # components moved to other places on the ring
    scrambled = np.concatenate([centers[perm][y] + (x - centers[y]), np.ones((len(x), 1)) * 8.0], 1)
    assert global_structure(scrambled, y, centers) < global_structure(faithful, y, centers) - 0.3
    assert local_structure(x, scrambled, y) > 0.5  # neighbourhoods inside a component are intact
