"""DSM with Vincent's parametrisation s = (r(x~, sigma) - x~) / sigma^2 beats the trivial floor 1/2 D."""
import math

import pytest
import torch

from conftest import needs_fmnist
from ssl_bench.config import RunConfig
from ssl_bench.method import DataSpec
from ssl_bench.trainer import build_method, train


def test_score_is_vincents_and_starts_at_the_trivial_floor():
    spec = DataSpec("image", (1, 8, 8), 64)
    m = build_method(RunConfig(method="dsm", dataset="digits", precision="fp32", seed=0), spec)
    x = torch.randn(256, 1, 8, 8)
    torch.manual_seed(0)
    loss, _ = m.training_step([x])
    # r ~ x~ at init (g ~ 0): 1/2 sigma^2 ||(x~ - x~)/sigma^2 + eps/sigma^2||^2 = ||eps||^2 / (2 sigma^2) ~ D / 2
    assert loss.item() == pytest.approx(64 / 2, rel=0.1)


def test_the_score_sees_every_pixel_of_the_noisy_input():
    # the exact score has a pixel-wise part (-x~/sigma^2 far from the data), a full-rank function of
    # all D = 784 pixels; a head on the 128-d pooled feature (the old parametrisation) has a
    # Jacobian of rank <= 129
    spec = DataSpec("image", (1, 28, 28), 64)
    m = build_method(RunConfig(method="dsm", dataset="fashion-mnist", precision="fp32", seed=0), spec).eval()
    torch.manual_seed(0)
    last = m.denoiser.net[-1]
    with torch.no_grad():  # zero at init (r = x~): give g some weights, as training does
        last.weight.normal_(0, 0.1)
    x = torch.randn(1, 1, 28, 28)
    jac = torch.func.jacrev(lambda v: m.score(v.view(1, 1, 28, 28), 0.5).flatten())(x.flatten())
    assert jac.shape == (784, 784)
    assert int(torch.linalg.matrix_rank(jac)) > 400


@needs_fmnist
@pytest.mark.slow
def test_quick_budget_loss_ends_below_sixty_percent_of_the_floor(tmp_path):
    # quick preset: 2 epochs on the 20k subset, batch 128 (312 steps); fp32 for hardware-independent numbers.
    # Before: the score head saw only the pooled feature and log sigma: 394.2 -> 392.2, the floor itself.
    cfg = RunConfig(method="dsm", dataset="fashion-mnist", preset="quick", precision="fp32", device="cpu",
                    progress=False)
    res = train(cfg, tmp_path)
    rows = (res.run_dir / "train_log.csv").read_text().splitlines()
    col = rows[0].split(",").index("loss")
    last = float(rows[-1].split(",")[col])
    floor = 0.5 * math.prod((1, 28, 28))  # 392
    assert last <= 0.6 * floor, last
