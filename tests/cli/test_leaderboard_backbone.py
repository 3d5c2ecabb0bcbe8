"""Rankings within a backbone, the gain over random-init, and fair reference rows (issue #34)."""

import math
from pathlib import Path

from scipy import stats as st

from ssl_bench.config import RunConfig
from ssl_bench.leaderboard import aggregate, load_frame, to_markdown
from ssl_bench.registry import EVALUATORS
from ssl_bench.results import append_rows, make_rows


def _runs(runs, method, backbone, values, method_kwargs=None):
    for seed, v in enumerate(values):
        cfg = RunConfig(
            method=method, dataset="mog2d", preset="smoke", seed=seed, method_kwargs=method_kwargs or {}
        ).with_preset()
        run_id = f"{method}-{backbone}-s{seed}"
        append_rows(
            runs / run_id / "results.jsonl",
            make_rows(
                {"top1": v},
                evaluator="knn",
                run_id=run_id,
                method=method,
                dataset="mog2d",
                backbone=backbone,
                preset="smoke",
                epochs=0 if method in ("pixels", "random-init") else 1,
                seed=seed,
                config_hash=cfg.hash(),
                config=cfg.to_dict(),
                device="cpu",
                train_seconds=1.0,
                eval_seconds=0.1,
                eval_options=EVALUATORS.get("knn").resolved_options(None),
            ),
        )


def board(tmp_path):
    runs = tmp_path / "runs"
    _runs(runs, "pixels", "-", [90.0, 90.0, 90.0])
    _runs(runs, "simclr", "cnn", [85.0, 86.0, 87.0])
    _runs(runs, "byol", "cnn", [80.0, 80.5, 81.0])
    _runs(runs, "random-init", "cnn", [79.0, 80.0, 81.0], {"bn_stats": "train"})
    _runs(runs, "mae", "vit", [75.0, 76.0, 77.0])
    _runs(runs, "random-init", "vit", [60.0, 61.0, 62.0])
    df = load_frame(runs)
    return df, aggregate(df)


def test_marks_are_computed_within_each_backbone(tmp_path):
    df, t = board(tmp_path)
    mark = dict(zip(t["label"] + "@" + t["backbone"], t["knn_top1_mark"], strict=True))
    # before #34 one ranking: pixels (90) best, every other row 'tied' or unmarked against it;
    # now each backbone has its own best, and pixels (deterministic) is never marked
    assert mark["simclr@cnn"] == "best" and mark["byol@cnn"] == "" and mark["random-init@cnn"] == ""
    assert mark["mae@vit"] == "best" and mark["random-init@vit"] == ""
    assert mark["pixels@-"] == ""


def test_gain_over_the_same_backbones_random_init_with_its_welch_interval(tmp_path):
    df, t = board(tmp_path)
    row = t.set_index("label")
    mae = t[t["method"] == "mae"].iloc[0]
    assert mae["gain_knn_top1_mean"] == 15.0  # 76 - 61: against the ViT's reference, not the CNN's
    # Welch: both sides std 1, n 3 -> se = sqrt(2/3), df = 4
    assert math.isclose(mae["gain_knn_top1_ci95"], st.t.ppf(0.975, 4) * math.sqrt(2 / 3), rel_tol=1e-9)
    assert row.loc["simclr", "gain_knn_top1_mean"] == 6.0
    assert math.isnan(row.loc["pixels", "gain_knn_top1_mean"])
    md = to_markdown(t, "mog2d", "ssl-bench leaderboard", df)
    line = next(x for x in md.splitlines() if x.startswith("| mae "))
    assert f"+15.00 ± {st.t.ppf(0.975, 4) * math.sqrt(2 / 3):.2f}" in line
    assert "gain over random-init (k-NN top1)" in md


def test_pixels_is_shown_without_a_seed_interval(tmp_path):
    df, t = board(tmp_path)
    md = to_markdown(t, "mog2d", "ssl-bench leaderboard", df)
    line = next(x for x in md.splitlines() if x.startswith("| _pixels_"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4] == "—" and cells[5] == "90.00"  # n and the value, no "± 0.00", not bold


def test_a_random_init_row_without_recalibrated_bn_says_so(tmp_path):
    runs = tmp_path / "runs"
    _runs(runs, "random-init", "cnn-small", [80.0, 81.0])  # a row written before #34
    _runs(runs, "random-init", "timm:vit_tiny_patch16_224", [70.0, 71.0])  # no BN: nothing to recalibrate
    t = aggregate(load_frame(runs))
    labels = dict(zip(t["backbone"], t["label"], strict=True))
    assert labels["cnn-small"] == "random-init [BN stats at init]"
    assert labels["vit-mini (w96 d4, patches from the image size)"] == "random-init"  # mog2d: no image size


# -- the backbone a row names (vit-mini, and the rows written before it had a name) ------------------
ROOT = Path(__file__).resolve().parents[2]
STANDARD = ROOT / "leaderboards" / "fashion-mnist-standard-rows"
VIT = "vit-mini (w96 d4, 7-px patches, 16 tokens)"


def test_a_committed_mae_row_is_labelled_with_the_vit_it_trained(tmp_path):
    """Committed mae rows say timm:vit_tiny_patch16_224 (config backbone "auto"): the table shows the
    96-wide, 4-deep, 7-px-patch ViT they trained, not ViT-Ti/16; the stored rows stay as they are."""
    runs = tmp_path / "runs"
    runs.mkdir()
    for d in sorted(STANDARD.glob("fashion-mnist-mae-timm-vit_tiny_patch16_224-standard-s*")) + sorted(
        STANDARD.glob("fashion-mnist-random-init-timm-vit_tiny_patch16_224-standard-s*")
    ):
        (runs / d.name).symlink_to(d)
    df = load_frame(runs)
    assert set(df["backbone"]) == {"timm:vit_tiny_patch16_224"} and set(c["backbone"] for c in df["config"]) == {"auto"}
    t = aggregate(df)
    assert list(t["backbone"]) == [VIT, VIT] and sorted(t["label"]) == ["mae", "random-init"]
    mae = t[t["method"] == "mae"].iloc[0]
    assert mae["n"] == 3 and math.isfinite(mae["gain_knn_top1_mean"])  # against the ViT's random-init
    md = to_markdown(t, "fashion-mnist", "ssl-bench leaderboard", df)
    assert f"| mae | {VIT} | standard | 20 | 3 |" in md and "vit_tiny_patch16_224" not in md
    from ssl_bench.headline import short_markdown

    assert f"| mae | {VIT} |" in short_markdown(t, "ssl-bench leaderboard --readme README.md")


def _vit_rows(runs, method, backbone, seeds, value, recipe=None):
    for seed in seeds:
        cfg = RunConfig(method=method, dataset="fashion-mnist", preset="smoke", seed=seed).with_preset()
        run_id = f"{method}-{backbone.replace(':', '-')}-s{seed}"
        append_rows(runs / run_id / "results.jsonl", make_rows(
            {"top1": value + seed}, evaluator="knn", run_id=run_id, method=method, dataset="fashion-mnist",
            backbone=backbone, preset="smoke", epochs=0 if method == "random-init" else 1, seed=seed,
            config_hash=cfg.hash(), config=cfg.to_dict(), device="cpu", train_seconds=1.0, eval_seconds=0.1,
            eval_options=EVALUATORS.get("knn").resolved_options(None),
            train_meta={"recipe": recipe} if recipe else None))


def test_rows_from_before_and_after_the_name_rank_together_but_do_not_merge(tmp_path):
    """An old mae row (timm:vit_tiny_patch16_224, no recipe recorded) and a new one (vit-mini, its
    recipe digest in the train hash): the same backbone label, ranked and compared with random-init
    together, but two configurations (train hashes differ), told apart by their hash, never one mean.
    random-init rows of both names share a train hash (no recipe): still two rows, named by what
    they were stored as."""
    runs = tmp_path / "runs"
    _vit_rows(runs, "mae", "timm:vit_tiny_patch16_224", [0, 1, 2], 80.0)
    _vit_rows(runs, "mae", "vit-mini", [0, 1, 2], 70.0, recipe={"mask_ratio": 0.75})
    _vit_rows(runs, "random-init", "timm:vit_tiny_patch16_224", [0, 1, 2], 60.0)
    _vit_rows(runs, "random-init", "vit-mini", [0, 1, 2], 60.0)
    _vit_rows(runs, "simclr", "cnn-small", [0, 1, 2], 50.0)
    t = aggregate(load_frame(runs))
    vit = t[t["backbone"] == VIT]
    assert len(vit) == 4 and (vit["n"] == 3).all() and set(t["backbone"]) == {VIT, "cnn-small"}
    mae = vit[vit["method"] == "mae"].set_index("train_hash")
    assert len(mae) == 2 and all(lab == f"mae #{h[:6]}" for h, lab in mae["label"].items())
    assert sorted(mae["knn_top1_mean"]) == [71.0, 81.0]  # two means, not one over six runs
    # one ranking per backbone label: the old row is best, the new one far below it, unmarked
    marks = dict(zip(vit["knn_top1_mean"], vit["knn_top1_mark"], strict=False))
    assert marks[81.0] == "best" and marks[71.0] == ""
    assert t.loc[t["method"] == "simclr", "knn_top1_mark"].iloc[0] == "best"  # the CNN is ranked apart
    refs = vit[vit["method"] == "random-init"]
    assert refs["train_hash"].nunique() == 1 and sorted(refs["label"]) == [
        f"random-init #{refs['train_hash'].iloc[0][:6]} (rows of timm:vit_tiny_patch16_224)",
        f"random-init #{refs['train_hash'].iloc[0][:6]} (rows of vit-mini)",
    ]
    assert sorted(mae["gain_knn_top1_mean"]) == [10.0, 20.0]  # both against the ViT's random-init (61)


def test_board_takes_an_old_vit_random_init_row_as_vit_minis_reference(tmp_path, capsys):
    """The committed standard board plans no reference row: its random-init rows named
    timm:vit_tiny_patch16_224 are vit-mini's, whose run id now says vit-mini."""
    from ssl_bench.cli import main

    lb = tmp_path / "lb"
    lb.mkdir()
    (lb / "fashion-mnist-standard-rows").symlink_to(STANDARD)
    assert main(["board", "fashion-mnist-standard", "--dry-run", "--leaderboards", str(lb)]) == 0
    out = capsys.readouterr().out
    assert " 0 to train, 0 stale" in out and "refs" not in out
