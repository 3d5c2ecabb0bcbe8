"""One random stream per step: a method's own draws in ``training_step`` (masks, noise levels,
shuffles, random projections) come from ``self.clock.generator()``, seeded by (seed, step) like
the views, never from torch's global RNG. So a step is the same after a resume, on any number of
ranks, and whatever ran before it in the process."""
import pytest
import torch

from ssl_bench.config import RunConfig
from ssl_bench.datasets import load_dataset
from ssl_bench.method import TrainClock
from ssl_bench.registry import METHODS
from ssl_bench.trainer import build_method, data_spec
from ssl_bench.views import view_generator

_DATA: dict = {}


def _setup(name, **hp):
    ds = "mog2d" if "vector" in METHODS.get(name).data_kinds else "digits"
    if ds not in _DATA:
        _DATA[ds] = load_dataset(ds)
    d = _DATA[ds]
    torch.manual_seed(0)
    cfg = RunConfig(method=name, dataset=ds, preset="smoke", epochs=1, batch_size=8, device="cpu", progress=False,
                    method_kwargs=hp)
    m = build_method(cfg, data_spec(d))
    views = m.make_views(data_spec(d))(d.to_float(d.x_train[:8]), view_generator(0, 0, "cpu"))
    return m, views


def _loss(m, views, clock, global_seed):
    m.clock = clock
    torch.manual_seed(global_seed)
    before = torch.get_rng_state()
    loss, _ = m.training_step(views)
    touched = not torch.equal(before, torch.get_rng_state())
    return float(loss.detach()), touched


@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_training_step_leaves_the_global_rng_alone(name):
    m, views = _setup(name)
    clock = TrainClock(step=5, steps_per_epoch=10, total_steps=20, seed=3)
    a, touched = _loss(m, views, clock, global_seed=1)
    b, _ = _loss(m, views, clock, global_seed=2)
    assert not touched, f"{name}: training_step drew from torch's global RNG"
    assert a == b


@pytest.mark.parametrize("name, hp", [("dsm", {}), ("ijepa", {}), ("mae", {}), ("lejepa", {}),
                                      ("moco-v2", {"bn_splits": 4})])
def test_the_step_and_the_seed_choose_the_draws(name, hp):
    """Same (seed, step): the same loss; another step or another seed: other masks / noise."""
    m, views = _setup(name, **hp)
    same = _loss(m, views, TrainClock(7, 10, 20, seed=1), 0)[0], _loss(m, views, TrainClock(7, 10, 20, seed=1), 9)[0]
    other_step = _loss(m, views, TrainClock(8, 10, 20, seed=1), 0)[0]
    other_seed = _loss(m, views, TrainClock(7, 10, 20, seed=2), 0)[0]
    assert same[0] == same[1]
    assert other_step != same[0] and other_seed != same[0]


def test_the_method_stream_is_not_the_views_stream():
    a = torch.rand(8, generator=TrainClock(4, 10, 20, seed=1).generator())
    b = torch.rand(8, generator=view_generator(1, 4, "cpu"))
    assert not torch.equal(a, b)
    assert torch.equal(a, torch.rand(8, generator=TrainClock(4, 10, 20, seed=1).generator()))
