"""I-JEPA's prediction loss: mean squared error by default (the paper's L2, what every committed row
trained with), the reference code's smooth-L1 (facebookresearch/ijepa src/train.py,
F.smooth_l1_loss: beta 1, mean) with loss=smooth_l1."""
import pytest
import torch
import torch.nn.functional as F

from ssl_bench import losses
from ssl_bench.config import RunConfig
from ssl_bench.datasets import load_dataset
from ssl_bench.errors import ConfigError
from ssl_bench.method import TrainClock
from ssl_bench.recipe import resolved_recipe
from ssl_bench.registry import METHODS
from ssl_bench.trainer import build_method, data_spec
from ssl_bench.views import view_generator


def _step(hp, monkeypatch):
    """ijepa's loss on 8 digits at one fixed step, and the (pred, target) it was computed from."""
    d = load_dataset("digits")
    torch.manual_seed(0)
    cfg = RunConfig(method="ijepa", dataset="digits", preset="smoke", epochs=1, batch_size=8, device="cpu",
                    progress=False, method_kwargs=hp)
    m = build_method(cfg, data_spec(d))
    views = m.make_views(data_spec(d))(d.to_float(d.x_train[:8]), view_generator(0, 0, "cpu"))
    seen, real = {}, losses.token_regression

    def spy(pred, target, kind="mse"):
        seen.update(pred=pred.detach(), target=target.detach(), kind=kind)
        return real(pred, target, kind)

    monkeypatch.setattr(losses, "token_regression", spy)
    m.clock = TrainClock(step=3, steps_per_epoch=10, total_steps=20, seed=1)
    loss, _ = m.training_step(views)
    monkeypatch.undo()
    return float(loss.detach()), seen


def test_ijepa_default_is_mse_and_loss_smooth_l1_switches_to_the_reference_loss(monkeypatch):
    assert METHODS.get("ijepa").defaults["loss"] == "mse"
    mse, a = _step({}, monkeypatch)
    smooth, b = _step({"loss": "smooth_l1"}, monkeypatch)
    # same init, same step, same masks: the same predictions and targets, only the loss differs
    assert torch.equal(a["pred"], b["pred"]) and torch.equal(a["target"], b["target"])
    assert (a["kind"], b["kind"]) == ("mse", "smooth_l1")
    assert mse == pytest.approx(F.mse_loss(a["pred"], a["target"]).item(), rel=1e-6)
    diff = (b["pred"] - b["target"]).abs()
    assert smooth == pytest.approx(torch.where(diff < 1, 0.5 * diff**2, diff - 0.5).mean().item(), rel=1e-6)
    assert smooth != pytest.approx(mse, rel=1e-3)
    with pytest.raises(ConfigError, match="loss must be one of mse, smooth_l1"):
        _step({"loss": "l1"}, monkeypatch)


def test_the_default_loss_leaves_the_recorded_recipe_as_before():
    """The option was added after the boards' ijepa rows were trained with MSE: at "mse" it is not
    recorded (those rows keep their recipe digest), any other value is."""
    cfg = RunConfig(method="ijepa", dataset="fashion-mnist")
    assert "loss" not in resolved_recipe(cfg)
    assert resolved_recipe(cfg) == resolved_recipe(RunConfig(method="ijepa", method_kwargs={"loss": "mse"}))
    assert resolved_recipe(RunConfig(method="ijepa", method_kwargs={"loss": "smooth_l1"}))["loss"] == "smooth_l1"
    cls = METHODS.get("ijepa")
    assert cls.recipe_options({"loss": "mse", "min_keep": 4}) == {"min_keep": 4}
    assert METHODS.get("simclr").recipe_options({"temperature": 0.1}) == {"temperature": 0.1}
