"""ssl-bench study littwin: Littwin et al. 2024's deep linear JEPA vs MAE, at the tiny budget."""

import csv

import numpy as np
import pytest
import torch

from ssl_bench.cli import main
from ssl_bench.studies.littwin import LAMBDA, RHO, final_value, gradients, train


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    out = tmp_path_factory.mktemp("littwin")
    assert main(["study", "littwin", "--budget", "tiny", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "littwin-tiny.csv")))
    assert (out / "littwin-tiny.md").is_file() and (out / "littwin-tiny.png").stat().st_size > 1000
    return {(r["objective"], int(r["depth L"])): r for r in rows}


def times(row):
    return float(row["t_A (lambda 1, rho 0.4)"]), float(row["t_B (lambda 0.35, rho 1)"])


def test_data_sets_the_two_orders_against_each_other():
    assert LAMBDA[0] > LAMBDA[1] and RHO[0] < RHO[1]  # A: high lambda, low rho; B: the reverse


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_mae_learns_the_high_lambda_feature_first_at_every_depth(table, depth):
    row = table[("MAE", depth)]
    t_a, t_b = times(row)
    assert row["converged"] == "True"
    assert t_a < t_b, (depth, t_a, t_b)


@pytest.mark.parametrize("depth", [3, 4])
def test_jepa_learns_the_high_rho_feature_first_at_depth_3_and_more(table, depth):
    row = table[("JEPA", depth)]
    t_a, t_b = times(row)
    assert row["converged"] == "True"
    assert t_b < t_a, (depth, t_a, t_b)


def test_jepa_bias_towards_rho_grows_with_depth_and_is_absent_at_depth_1(table):
    ratios = [times(table[("JEPA", d)])[0] / times(table[("JEPA", d)])[1] for d in (1, 2, 3, 4)]
    assert ratios == sorted(ratios), ratios  # t_A / t_B grows with depth
    assert ratios[0] < 1  # a shallow JEPA still learns the high-covariance feature first
    mae = [times(table[("MAE", d)])[0] / times(table[("MAE", d)])[1] for d in (1, 2, 3, 4)]
    assert max(mae) < 1 < ratios[-1]


@pytest.mark.parametrize("objective", ["jepa", "mae"])
def test_gradients_are_those_of_the_matrix_losses(objective):
    """The diagonal dynamics are exactly gradient descent on the d x d matrix losses: autograd on
    full matrices (diagonal values, random off-diagonals at zero) gives the same diagonal gradient
    and no off-diagonal one."""
    rng = np.random.default_rng(0)
    depth, d = 3, 2
    lam, rho = np.array(LAMBDA), np.array(RHO)
    layers, head = rng.uniform(0.2, 1.0, (depth, d)), rng.uniform(0.2, 1.0, d)
    gl, gh = gradients(objective, layers.copy(), head.copy(), lam, rho)
    Ws = [torch.tensor(np.diag(v), requires_grad=True) for v in layers]
    V = torch.tensor(np.diag(head), requires_grad=True)
    sxx, sxy = torch.tensor(np.diag(lam)), torch.tensor(np.diag(lam * rho))
    W = Ws[0]
    for M in Ws[1:]:
        W = M @ W
    A = V @ W
    if objective == "jepa":  # 1/2 E||V W x - sg(W y)||^2, constant terms dropped
        loss = 0.5 * torch.trace(A @ sxx @ A.T) - torch.trace(A @ sxy @ W.detach().T)
    else:  # 1/2 E||V W x - y||^2
        loss = 0.5 * torch.trace(A @ sxx @ A.T) - torch.trace(A @ sxy)
    grads = torch.autograd.grad(loss, Ws + [V])
    for i in range(depth):
        assert np.allclose(np.diag(grads[i].numpy()), gl[i])
        assert np.allclose(grads[i].numpy() - np.diag(np.diag(grads[i].numpy())), 0)
    assert np.allclose(np.diag(grads[-1].numpy()), gh)


def test_runs_converge_to_the_stated_fixed_points():
    for objective in ("jepa", "mae"):
        r = train(objective, 2, eps=0.005, lr=0.5, max_time=20_000)
        assert r["converged"]
        assert np.allclose(r["final"], final_value(objective, 2, RHO), rtol=0.02)


def test_bad_depths_are_a_one_line_error(capsys):
    assert main(["study", "littwin", "--depths", "0"]) == 2
    assert "--depths" in capsys.readouterr().err
