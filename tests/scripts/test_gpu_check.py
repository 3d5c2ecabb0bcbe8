"""benchmarks/gpu_check.sh --dry-run: the GPU check runs end to end on the CPU (tiny sizes) and
writes the JSON lines a GPU run would, with positive measurements."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_fmnist

ROOT = Path(__file__).resolve().parents[2]
STEP_METHODS = {"simclr", "byol", "vicreg", "dino", "mae"}


@needs_fmnist  # the eval phase trains and evaluates on Fashion-MNIST, as on the GPU
def test_gpu_check_dry_run_writes_positive_measurements(tmp_path):
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path), "DRY_RUN": "1"}
    env.pop("DRY_COMPILE", None)
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "gpu_check.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in rows]
    assert kinds[0] == "machine" and kinds[-1] == "done"
    assert rows[0]["dry_run"] is True and rows[0]["device"] == "cpu" and rows[0]["cpus"] > 0

    phases = {r["phase"]: r for r in rows if r["kind"] == "phase"}
    assert [phases[k]["status"] for k in ("steps", "syncs", "eval")] == ["ok", "ok", "ok"]
    assert phases["graphs"]["status"] == "skipped" and phases["compile"]["status"] == "skipped"

    thr = {r["method"]: r for r in rows if r["kind"] == "throughput"}
    assert set(thr) == STEP_METHODS
    for r in thr.values():
        assert "error" not in r, r
        assert r["ssl_img_s"] > 0 and r["ceiling_img_s"] > 0 and r["ssl_ms_per_step"] > 0
        assert r["ratio"] == pytest.approx(r["ssl_img_s"] / r["ceiling_img_s"])
        assert r["compile"] == "none" and r["channels_last"] is True and r["precision"] in ("fp32", "bf16")

    syn = {r["method"]: r for r in rows if r["kind"] == "sync_check"}
    assert set(syn) == STEP_METHODS | {"swav", "ijepa"}
    for r in syn.values():
        assert "error" not in r, r
        assert r["syncs_per_step"] is None and r["conversions_per_step"] >= 0  # no sync debug mode on a CPU
    # I-JEPA draws its masks with Python ints from CPU tensors: the counter must see them
    assert syn["ijepa"]["conversions_per_step"] > 0
    assert any("views.py" in site for site in syn["ijepa"]["conversion_sites"])
    assert syn["simclr"]["conversions_per_step"] == 0

    (ev,) = [r for r in rows if r["kind"] == "eval"]
    assert ev["dataset"] == "fashion-mnist" and ev["backbone"] == "cnn-small"
    assert ev["train_seconds"] > 0 and ev["eval_wall_s"] > 0 and ev["eval_over_train"] > 0
    assert {"knn", "linear"} <= set(ev["evaluator_seconds"]) and all(v >= 0 for v in ev["evaluator_seconds"].values())
    assert ev["eval_wall_s"] >= ev["evaluators_total_s"] > 0
    assert ev["knn_backend"] in ("faiss", "torch") and 0 < ev["knn_top1"] <= 100
    assert "done in" in p.stdout  # the summary table was printed
