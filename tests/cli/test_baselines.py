"""random-init is measured with every backbone the sweep trains, so each SSL row has its own."""
from ssl_bench.pipeline import baseline_backbones, evaluate_baselines
from ssl_bench.registry import EVALUATORS
from ssl_bench.trainer import load_data


def test_random_init_row_per_backbone_of_the_sweep(tiny, tmp_path):
    cfg = tiny(dataset="digits", eval_train_subset=300, eval_test_subset=100)
    names = [b for b, _ in baseline_backbones(cfg, "image", ["simclr", "mae", "ijepa", "byol"])]
    assert names[0] == "cnn-small" and len(names) == 2 and names[1] == "vit-mini"
    rows = evaluate_baselines(cfg, tmp_path, load_data(cfg), EVALUATORS.resolve(["knn"]), ["simclr", "mae"])
    got = {(r["method"], r["backbone"]) for r in rows if r["metric"] == "top1"}
    assert got == {("pixels", "-"), ("random-init", "cnn-small"), ("random-init", names[1])}
    top1 = {r["backbone"]: r["value"] for r in rows if r["metric"] == "top1"}
    assert all(0 < v <= 100 for v in top1.values())
    run_ids = {r["run_id"] for r in rows}
    assert "digits-pixels-smoke-s0" in run_ids and all("--" not in r for r in run_ids)
    assert len(run_ids) == 3 and all((tmp_path / r / "results.jsonl").is_file() for r in run_ids)
