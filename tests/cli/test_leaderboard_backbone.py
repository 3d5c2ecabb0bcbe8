"""Rankings within a backbone, the gain over random-init, and fair reference rows (issue #34)."""

import math

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
    assert labels["timm:vit_tiny_patch16_224"] == "random-init"
