"""optimizer: paper — each method's declared paper optimiser (LARS, SGD or AdamW with the paper's lr
and weight decay), beside the harness's AdamW, and recorded in the recipe."""
import pytest

from ssl_bench.checkpoint import read_encoder
from ssl_bench.config import RunConfig
from ssl_bench.errors import ConfigError
from ssl_bench.optim import LARS, optim_choice
from ssl_bench.recipe import resolved_recipe
from ssl_bench.registry import METHODS
from ssl_bench.trainer import train

PAPER = {  # method: (optimizer, lr at batch 128, weight decay), from the papers and their code
    "simclr": ("lars", 0.15, 1e-6), "byol": ("lars", 0.1, 1.5e-6), "vicreg": ("lars", 0.1, 1e-6),
    "moco-v2": ("sgd", 0.015, 1e-4), "simsiam": ("sgd", 0.025, 1e-4), "dino": ("sgd", 0.015, 1e-4),
    "mae": ("adamw", 7.5e-5, 0.05), "ijepa": ("adamw", 1e-3, 0.04),  # I-JEPA does not scale its lr
}


@pytest.mark.parametrize("method", sorted(PAPER))
def test_paper_optimiser_of_a_method_scales_its_lr_with_the_batch(method):
    name, lr, wd, extra = optim_choice("paper", None, None, 128, METHODS.get(method))
    want = PAPER[method]
    assert (name, wd, extra) == (want[0], want[2], {"optim.optimizer": want[0]})
    assert lr == pytest.approx(want[1])


def test_the_config_still_wins_and_adamw_is_unchanged():
    cls = METHODS.get("simclr")
    assert optim_choice("paper", 0.5, 1e-3, 128, cls)[:3] == ("lars", 0.5, 1e-3)
    # the harness's AdamW: no recipe entry, so every recipe digest recorded before stays the same
    assert optim_choice("adamw", None, None, 128, cls) == ("adamw", None, None, {})
    assert optim_choice("adamw", None, None, 128, METHODS.get("dino"))[2] == 0.04  # optim_defaults
    assert "optim.optimizer" not in resolved_recipe(RunConfig(method="simclr"))
    assert resolved_recipe(RunConfig(method="simclr", optimizer="paper"))["optim.optimizer"] == "lars"


def test_a_method_without_a_paper_optimiser_is_one_line():
    with pytest.raises(ConfigError, match="declares no paper optimiser; use adamw, sgd or lars"):
        optim_choice("paper", None, None, 128, METHODS.get("siamese-margin"))
    with pytest.raises(ConfigError, match="known: adamw, sgd, lars, paper"):
        RunConfig(optimizer="adam")


def test_a_paper_run_trains_with_lars_and_records_it(tiny, runs, monkeypatch):
    made = []
    orig = LARS.__init__

    def spy(self, params, lr, **kw):
        made.append(lr)
        orig(self, params, lr, **kw)

    monkeypatch.setattr(LARS, "__init__", spy)
    res = train(tiny(method="simclr", optimizer="paper"), runs)
    assert made == [pytest.approx(0.3 * 64 / 256)]  # batch 64
    _, meta = read_encoder(res.checkpoint)
    assert meta["recipe"]["optim.optimizer"] == "lars" and meta["recipe"]["optim.lr"] == pytest.approx(0.075)
