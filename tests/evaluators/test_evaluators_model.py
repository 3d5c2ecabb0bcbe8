"""lidar and reconstruction (model evaluators), the harness skipping them for pixels, and
``ssl-bench eval-embeddings``."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from ssl_bench.cli import main
from ssl_bench.datasets import load_dataset
from ssl_bench.evaluators.lidar import lidar_score
from ssl_bench.evaluators.reconstruction import Decoder, perturb, psnr, train_phase
from ssl_bench.method import Method
from ssl_bench.registry import EVALUATORS


def numpy_lidar(e, delta=1e-4, eps=1e-8):
    """Direct LDA from the paper's formulas, with scipy's matrix square root."""
    from scipy.linalg import eigh, sqrtm

    n, q, d = e.shape
    mu = e.mean(1)
    sb = np.cov(mu.T, ddof=1)
    sw = sum((e[i] - mu[i]).T @ (e[i] - mu[i]) for i in range(n)) / (n * (q - 1)) + delta * np.eye(d)
    w = np.linalg.inv(np.real(sqrtm(sw)))
    lam = np.clip(eigh(w @ sb @ w, eigvals_only=True), 0, None)
    p = lam / lam.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def test_lidar_matches_direct_lda():
    rng = np.random.default_rng(0)
    e = rng.standard_normal((40, 5, 6)) * [3, 2, 1, 1, 0.5, 0.1] + rng.standard_normal((40, 1, 6)) * 4
    assert lidar_score(e) == pytest.approx(numpy_lidar(e), rel=1e-6)


def test_lidar_on_constructed_surrogate_classes():
    rng = np.random.default_rng(1)
    # class means spread isotropically in 8 dims, small within-class noise: LiDAR ≈ 8
    iso = rng.standard_normal((400, 1, 8)) + 0.01 * rng.standard_normal((400, 4, 8))
    assert lidar_score(iso) == pytest.approx(8, rel=0.05)
    # class means on a 2-dim subspace: LiDAR ≈ 2
    flat = np.zeros((400, 4, 8))
    flat[..., :2] = rng.standard_normal((400, 1, 2))
    flat += 0.01 * rng.standard_normal(flat.shape)
    assert lidar_score(flat) == pytest.approx(2, rel=0.05)
    with pytest.raises(ValueError):
        lidar_score(np.zeros((5, 1, 3)))


class Tiny(nn.Module):
    def __init__(self, d_in=64, d=16):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(d_in, d))
        self.out_dim = d

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def digits_data():
    return load_dataset("digits").subset(400, 100, seed=0)


def test_lidar_evaluator_runs_on_a_model(digits_data):
    torch.manual_seed(0)
    m = Method(Tiny()).eval()
    ev = EVALUATORS.get("lidar")(n_samples=64, n_views=4)
    assert ev.needs_model and not ev.needs_labels
    out = ev.run_model(m, digits_data, torch.device("cpu"))
    assert 1 <= out["lidar"] <= 16 and out["lidar_ratio"] == pytest.approx(out["lidar"] / 16)
    assert ev.run_model(m, digits_data, torch.device("cpu")) == out  # seeded


def test_psnr_formula_and_perturbation():
    assert psnr(0.01) == pytest.approx(20.0) and psnr(1e-4, peak=2.0) == pytest.approx(10 * math.log10(4 / 1e-4))
    assert psnr(0.0) == math.inf
    x = torch.rand(4, 1, 8, 8)
    y = perturb(x, torch.Generator().manual_seed(0), 0.3, 0.5, image=True)
    assert y.min() >= 0 and y.max() <= 1 and (y == 0).float().mean() > 0.3 and not torch.equal(x, y)


def test_frozen_phase_keeps_encoder_and_finetune_changes_it(digits_data):
    torch.manual_seed(0)
    model = Method(Tiny()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = digits_data.to_float(digits_data.x_train[:128]).float()
    xn = perturb(x, torch.Generator().manual_seed(1), 0.3, 0.25, True)
    dec = Decoder(16, tuple(x.shape[1:]), 32, True)
    dec_before = [p.clone() for p in dec.parameters()]
    train_phase(model, dec, x, xn, digits_data, 2, 32, 1e-2, False, 1e-3, 0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(dec_before, dec.parameters()))
    train_phase(model, dec, x, xn, digits_data, 1, 32, 1e-2, True, 1e-3, 0)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_reconstruction_evaluator_metrics_png_and_original_untouched(digits_data, tmp_path):
    torch.manual_seed(0)
    m = Method(Tiny()).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    ev = EVALUATORS.get("reconstruction")(n_train=300, n_test=80, hidden=64, batch_size=50, epochs_frozen=3,
                                          epochs_finetune=3, grid=6)
    ev.artifact_dir, ev.artifact_prefix = tmp_path, "epoch_0001-"
    out = ev.run_model(m, digits_data, torch.device("cpu"))
    assert set(out) == {"mse_frozen", "psnr_frozen", "mse_finetune", "psnr_finetune"}
    for ph in ("frozen", "finetune"):
        assert out[f"psnr_{ph}"] == pytest.approx(10 * math.log10(1 / out[f"mse_{ph}"]))
        assert 0 < out[f"mse_{ph}"] < 0.2
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # worked on a copy
    png = tmp_path / "epoch_0001-reconstruction.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and ev.artifacts["grid"] == png
    from PIL import Image

    w, h = Image.open(png).size
    assert (w, h) == (6 * 9 + 1, 4 * 9 + 1)  # 6 columns x 4 rows of 8x8 images, 1-pixel padding


def test_harness_skips_model_evaluators_for_pixels_and_runs_them_for_random_init(tiny, tmp_path):
    from ssl_bench.pipeline import evaluate_baselines, run_evaluators
    from ssl_bench.trainer import load_data

    cfg = tiny(evaluators=["knn", "lidar", "reconstruction", "alpha-req"])
    rows = evaluate_baselines(cfg, tmp_path, load_data(cfg), cfg.evaluators)
    got = {(r["method"], r["evaluator"]) for r in rows}
    assert ("pixels", "knn") in got and ("pixels", "alpha-req") in got
    assert ("pixels", "lidar") not in got and ("pixels", "reconstruction") not in got
    assert ("random-init", "lidar") in got and ("random-init", "reconstruction") in got
    assert all(np.isfinite(r["value"]) for r in rows if r["metric"] != "alpha")


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_eval_embeddings_json(tmp_path, capsys):
    rng = np.random.default_rng(0)
    c = rng.standard_normal((3, 10)) * 3
    ytr, yte = rng.integers(0, 3, 300), rng.integers(0, 3, 100)
    f = _npz(tmp_path / "e.npz", train_x=c[ytr] + rng.standard_normal((300, 10)), train_y=ytr,
             test_x=c[yte] + rng.standard_normal((100, 10)), test_y=yte)
    assert main(["eval-embeddings", f, "--evaluators", "knn,linear,rankme,collapse", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"knn", "linear", "rankme", "collapse"} and out["linear"]["top1"] > 90
    assert out["collapse"]["verdict_code"] == 0 and out["collapse"]["verdict"] == "ok"  # no lookup table needed
    assert main(["eval-embeddings", f, "--evaluators", "collapse"]) == 0
    assert "verdict=ok" in capsys.readouterr().out
    # a collapsed embedding reads as such
    h = _npz(tmp_path / "flat.npz", train_x=np.ones((300, 10)) + 1e-6 * rng.standard_normal((300, 10)), train_y=ytr,
             test_x=np.ones((100, 10)), test_y=yte)
    assert main(["eval-embeddings", h, "--evaluators", "collapse", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["collapse"]["verdict"] == "complete"
    # label-free evaluators need no labels
    g = _npz(tmp_path / "nolab.npz", train_x=rng.standard_normal((50, 4)), test_x=rng.standard_normal((20, 4)))
    assert main(["eval-embeddings", g, "--evaluators", "rankme,alpha-req", "--json", "--eval-opt", "rankme.seed=1"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"rankme", "alpha-req"}


@pytest.mark.parametrize("arrays,evs,msg", [
    (dict(train_x=np.zeros((5, 3)), test_x=np.zeros((5, 3)), test_y=np.zeros(5, int)), "knn", "missing array 'train_y'"),
    (dict(train_x=np.zeros((5, 3, 2)), test_x=np.zeros((5, 3))), "rankme", "must be a numeric (N >= 2, D >= 1) matrix"),
    (dict(train_x=np.full((5, 3), np.nan), test_x=np.zeros((5, 3))), "rankme", "NaN"),
    (dict(train_x=np.zeros((5, 3)), test_x=np.zeros((5, 4))), "rankme", "columns"),
    (dict(train_x=np.zeros((5, 3)), train_y=np.zeros(4, int), test_x=np.zeros((5, 3)), test_y=np.zeros(5, int)),
     "knn", "vector of 5 labels"),
    (dict(train_x=np.zeros((5, 3)), test_x=np.zeros((5, 3))), "lidar", "need a model"),
])
def test_eval_embeddings_bad_input_is_one_line(tmp_path, capsys, arrays, evs, msg):
    f = _npz(tmp_path / "bad.npz", **arrays)
    assert main(["eval-embeddings", f, "--evaluators", evs, "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1 and err.startswith("ssl-bench: error:")


def test_eval_embeddings_missing_or_garbage_file(tmp_path, capsys):
    assert main(["eval-embeddings", str(tmp_path / "nope.npz")]) == 2
    (tmp_path / "g.npz").write_text("not a zip")
    assert main(["eval-embeddings", str(tmp_path / "g.npz")]) == 2
    errs = capsys.readouterr().err.strip().splitlines()
    assert len(errs) == 2 and "no such file" in errs[0] and "not a readable .npz" in errs[1]


def test_list_evaluators_has_the_issue_set(capsys):
    assert main(["list", "evaluators", "--json"]) == 0
    names = set(json.loads(capsys.readouterr().out))
    assert {"knn", "linear", "lowshot", "rankme", "lidar", "alpha-req", "collapse", "reconstruction"} <= names
