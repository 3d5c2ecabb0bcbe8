"""The robustness evaluator (issue #34): corruptions, seeding, and its scores against the k-NN and
linear evaluators computed independently on the same images."""

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from ssl_bench.evaluators.knn import knn_accuracy
from ssl_bench.evaluators.linear import linear_fast
from ssl_bench.evaluators.robustness import CORRUPTIONS, corrupt, corrupted_sets
from ssl_bench.method import Method
from ssl_bench.registry import EVALUATORS
from ssl_bench.sampling import subsample_indices
from ssl_bench.trainer import load_data


def images(n=64, seed=0):
    return torch.rand((n, 1, 28, 28), generator=torch.Generator().manual_seed(seed))


def test_corruptions_do_what_they_say():
    x = images()
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    mid = torch.full((8, 1, 28, 28), 0.5)
    assert float((corrupt(mid, "noise", 1, g()) - mid).std()) == pytest.approx(0.08, rel=0.05)
    c = corrupt(x, "contrast", 2, g())  # deviations from each image's mean scaled by 0.2
    assert torch.allclose(c.std((1, 2, 3)), 0.2 * x.std((1, 2, 3)), rtol=1e-4)
    assert torch.allclose(c.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-6)
    assert torch.allclose(corrupt(x, "blur", 3, g()), TF.gaussian_blur(x, [11, 11], [1.5, 1.5]))
    # a translation moves a one-pixel dot by 2 px (severity 1) in some direction
    dot = torch.zeros(1, 1, 28, 28)
    dot[0, 0, 14, 14] = 1
    moved = corrupt(dot, "translation", 1, g())[0, 0]
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    cy, cx = float((moved * ys).sum() / moved.sum()), float((moved * xs).sum() / moved.sum())
    assert np.hypot(cy - 14, cx - 14) == pytest.approx(2.0, abs=0.05)
    # rotation by ±15 degrees keeps the image's centre and turns a bar
    bar = torch.zeros(1, 1, 28, 28)
    bar[0, 0, 13:15, 4:24] = 1
    r = corrupt(bar, "rotation", 1, g())[0, 0]
    dy, dx = ys - float((r * ys).sum() / r.sum()), xs - float((r * xs).sum() / r.sum())
    mu11, mu20, mu02 = (float((r * a * b).sum()) for a, b in ((dx, dy), (dx, dx), (dy, dy)))
    angle = np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02))  # the bar's principal axis
    assert abs(angle) == pytest.approx(15, abs=1.0) and abs(float((r * xs).sum() / r.sum()) - 13.5) < 0.1
    # elastic: a smooth field, RMS displacement grows with severity; the images change, not their range
    e1, e3 = corrupt(x, "elastic", 1, g()), corrupt(x, "elastic", 3, g())
    assert 0 < float((e1 - x).abs().mean()) < float((e3 - x).abs().mean()) and float(e3.max()) <= 1.0


def test_every_method_sees_the_same_corrupted_images():
    data = load_data(__import__("tests.conftest", fromlist=["tiny_config"]).tiny_config(dataset="digits"))
    x = data.to_float(data.x_test[:32])
    a = [(n, s, c) for n, s, c in corrupted_sets(data, x, CORRUPTIONS, seed=0)]
    b = [(n, s, c) for n, s, c in corrupted_sets(data, x, CORRUPTIONS, seed=0)]
    other = [c for _n, _s, c in corrupted_sets(data, x, ["noise"], seed=1)]
    assert [(n, s) for n, s, _ in a] == [(n, s) for n in CORRUPTIONS for s in (1, 2, 3)]
    assert all(torch.equal(p[2], q[2]) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0][2], other[0])


def test_scores_equal_the_knn_and_linear_probes_on_the_same_images(tiny):
    """On raw pixels (an identity encoder), the clean scores are the k-NN and linear probes' on the
    same samples, and corruption costs accuracy."""
    data = load_data(tiny(dataset="digits"))
    method = Method(torch.nn.Flatten()).eval()
    ev = EVALUATORS.get("robustness")(n_train=600, n_test=300, corruptions=["noise", "contrast", "translation"])
    m = ev.run_model(method, data, torch.device("cpu"))
    tr = subsample_indices(len(data.x_train), 600, 0)
    te = subsample_indices(len(data.x_test), 300, 1)
    norm = lambda x: data.normalize(data.to_float(x)).flatten(1).numpy()  # noqa: E731
    xtr, xte, ytr, yte = (
        norm(data.x_train[tr]),
        norm(data.x_test[te]),
        data.y_train[tr].numpy(),
        data.y_test[te].numpy(),
    )
    assert m["knn_clean"] == pytest.approx(knn_accuracy(xtr, ytr, xte, yte)["top1"])
    assert m["linear_clean"] == pytest.approx(linear_fast(xtr, ytr, xte, yte)[0]["top1"], abs=1e-4)
    assert m["knn_corrupt"] == pytest.approx(np.mean([m["knn_noise"], m["knn_contrast"], m["knn_translation"]]))
    assert m["knn_ratio"] == pytest.approx(m["knn_corrupt"] / m["knn_clean"])
    assert m["knn_clean"] > 90 and m["knn_translation"] < m["knn_clean"] - 10  # pixels are not shift-invariant
    assert 0 < m["linear_ratio"] < 1


def test_unknown_corruption_is_a_config_error(tiny):
    data = load_data(tiny(dataset="digits"))
    with pytest.raises(Exception, match="unknown corruption"):
        EVALUATORS.get("robustness")(corruptions=["fog"]).run_model(
            Method(torch.nn.Flatten()), data, torch.device("cpu")
        )
