"""Optimiser groups (no weight decay on 1-D parameters, per-module learning-rate multipliers) and
the head switches the collapse cases rely on."""
import pytest
import torch

from ssl_bench.errors import ConfigError
from ssl_bench.optim import make_optimizer, param_groups, warmup_cosine
from ssl_bench.method import DataSpec
from ssl_bench.trainer import build_method

from conftest import tiny_config


def _byol(**opts):
    cfg = tiny_config(method="byol", method_kwargs=dict(proj_hidden_dim=16, proj_dim=8, pred_hidden_dim=16, **opts))
    return build_method(cfg, DataSpec(kind="vector", input_shape=(2,)))


def _lr_of(opt, param):
    (g,) = [g for g in opt.param_groups if any(p is param for p in g["params"])]
    return g["lr"], g["weight_decay"]


def test_groups_split_decay_and_scale_the_predictor():
    m = _byol(pred_lr_scale=0.1)
    opt = make_optimizer("adamw", m, 0.01, 1e-4)
    w_pred, b_pred = m.predictor.net[0].weight, m.predictor.net[-1].bias
    assert _lr_of(opt, w_pred) == (pytest.approx(0.001), 1e-4)
    assert _lr_of(opt, b_pred) == (pytest.approx(0.001), 0.0)
    assert _lr_of(opt, m.projector.net[0].weight) == (0.01, 1e-4)
    assert _lr_of(opt, m.backbone.net[0].bias) == (0.01, 0.0)
    # every trainable parameter in exactly one group; the EMA target in none
    grouped = [p for g in opt.param_groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == sum(p.requires_grad for p in m.parameters())
    # the schedule scales every group alike: the ratio stays
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(10, 0.0))
    for _ in range(3):
        opt.step()
        sched.step()
    assert _lr_of(opt, w_pred)[0] / _lr_of(opt, m.projector.net[0].weight)[0] == pytest.approx(0.1)


def test_a_scaled_module_moves_by_the_scaled_step():
    """Adam's first step moves each weight by ~lr (sign of the gradient): the predictor by lr * scale."""
    torch.manual_seed(0)
    m = _byol(pred_lr_scale=0.25)
    opt = make_optimizer("adamw", m, 1e-3, 0.0)
    before = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
    x = torch.randn(32, 2)
    loss, _ = m.training_step([x, x + 0.1 * torch.randn_like(x)])
    loss.backward()
    opt.step()
    step = {n: (p.detach() - before[n]).abs() for n, p in m.named_parameters() if n in before}
    moved = lambda prefix: torch.cat([s[s > 0] for n, s in step.items() if n.startswith(prefix)])  # noqa: E731
    assert moved("predictor.").median().item() == pytest.approx(0.25e-3, rel=0.05)
    assert moved("projector.").median().item() == pytest.approx(1e-3, rel=0.05)


def test_default_has_one_rate_and_bad_multipliers_fail():
    opt = make_optimizer("sgd", _byol(), 0.05, 5e-4)
    assert {g["lr"] for g in opt.param_groups} == {0.05}
    with pytest.raises(ConfigError, match="multipliers must be > 0"):
        param_groups(_byol(pred_lr_scale=0.0), 0.0, 0.01)


def test_simsiam_output_bn_switch_makes_a_constant_output_reachable():
    """Affine-free output BN (default): zero mean, unit variance per dimension in training, so never a
    constant; out_bn_affine=True: scale 0 and shift c give the point collapse the paper reports."""
    spec = DataSpec(kind="vector", input_shape=(2,))
    kw = dict(proj_hidden_dim=16, proj_dim=8, pred_hidden_dim=4)
    plain = build_method(tiny_config(method="simsiam", method_kwargs=kw), spec)
    assert plain.projector.net[-1].weight is None
    z = plain.projector(plain.backbone(torch.randn(64, 2)))
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(8), atol=1e-3)
    affine = build_method(tiny_config(method="simsiam", method_kwargs=dict(kw, out_bn_affine=True)), spec)
    bn = affine.projector.net[-1]
    with torch.no_grad():
        bn.weight.zero_()
        bn.bias.copy_(torch.arange(8.0))
    z = affine.projector(affine.backbone(torch.randn(64, 2)))
    assert torch.allclose(z, torch.arange(8.0).expand(64, 8))


def test_lars_trust_coefficient_is_the_references_0_001():
    """One LARS step from zero momentum: a weight matrix moves by lr * 0.001 * ||p|| / ||d|| * d
    (d = grad + weight_decay * p, as moco-v3's LARS), a 1-D parameter by lr * grad, undecayed."""
    from ssl_bench.optim import LARS

    torch.manual_seed(0)
    m = _byol()
    opt = make_optimizer("lars", m, 0.3, 1e-6)
    assert isinstance(opt, LARS) and {g["eta"] for g in opt.param_groups} == {0.001}
    assert LARS([torch.nn.Parameter(torch.ones(2, 2))], lr=0.1).defaults["eta"] == 0.001
    w, b = m.projector.net[0].weight, m.predictor.net[-1].bias
    before = {n: p.detach().clone() for n, p in (("w", w), ("b", b))}
    x = torch.randn(32, 2)
    loss, _ = m.training_step([x, x + 0.1 * torch.randn_like(x)])
    loss.backward()
    d = w.grad + 1e-6 * before["w"]
    expected_w = before["w"] - 0.3 * 0.001 * before["w"].norm() / d.norm() * d
    expected_b = before["b"] - 0.3 * b.grad
    opt.step()
    torch.testing.assert_close(w.detach(), expected_w, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(b.detach(), expected_b, rtol=1e-6, atol=1e-8)
    # the trust ratio fixes a matrix's step size at lr * eta * ||p||, whatever the gradient's scale
    assert (w.detach() - before["w"]).norm().item() == pytest.approx(0.3 * 0.001 * before["w"].norm().item(), rel=1e-5)
