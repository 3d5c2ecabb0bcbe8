"""ssl-bench report: the online k-NN monitor, the figures, the self-contained HTML page, and the
page rendered in headless Chromium."""
import csv
import time

import torch

from ssl_bench.checkpoint import read_encoder
from ssl_bench.trainer import train


def _log(run_dir):
    with open(run_dir / "train_log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_knn_monitor_logs_accuracy_and_leaves_training_unchanged(tiny, runs, tmp_path):
    on = train(tiny(method="vicreg", epochs=3, knn_monitor_every=2), runs)
    off = train(tiny(method="vicreg", epochs=3), tmp_path / "off")  # smoke preset: monitor off
    assert on.run_dir.name == off.run_dir.name  # a monitoring key is not part of the config hash
    rows = _log(on.run_dir)
    # every 2 epochs and at the last one; 8 mog2d components, chance = 12.5 %
    assert [bool(r["knn_monitor"]) for r in rows] == [False, True, True]
    assert all(30 < float(r["knn_monitor"]) <= 100 for r in rows if r["knn_monitor"])
    assert "knn_monitor" not in _log(off.run_dir)[0]
    a, _ = read_encoder(on.checkpoint)
    b, _ = read_encoder(off.checkpoint)
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_knn_monitor_presets():
    from ssl_bench.config import RunConfig

    got = {p: RunConfig(preset=p).with_preset().knn_monitor_every for p in ("smoke", "quick", "full")}
    assert got["smoke"] == 0 and got["quick"] >= 1 and got["full"] >= 1
