"""--time-budget (ssl_bench.budget): the throughput probe fixes the steps, the schedules end there,
training stops there, and --resume keeps the plan. No wall clock: a fake clock advances a fixed
time per optimiser step (the probe's and the training's), so every number is exact."""

import csv

import pytest
import torch

import ssl_bench.trainer as trainer_mod
from ssl_bench import budget
from ssl_bench.checkpoint import read_encoder
from ssl_bench.cli import main
from ssl_bench.config import RunConfig
from ssl_bench.errors import ConfigError
from ssl_bench.trainer import _Batches, train


class StepClock:
    """Seconds that pass only when an optimiser step runs: ``dt`` per step."""

    def __init__(self, dt: float) -> None:
        self.t, self.dt = 0.0, dt

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clocked(monkeypatch):
    """(clock factory, the (step, total_steps, method) of every update): update_ advances the clock."""
    calls, clocks = [], []
    real = trainer_mod.update_

    def update(method, opt, sched, loss, step, total_steps, *rest):
        clocks[-1].t += clocks[-1].dt
        calls.append((step, total_steps, method))
        return real(method, opt, sched, loss, step, total_steps, *rest)

    monkeypatch.setattr(trainer_mod, "update_", update)

    def make(dt):
        clocks.append(StepClock(dt))
        return clocks[-1]

    return make, calls


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _plan_for(budget_s, dt, epochs):
    """What the probe measures with a step clock: WARMUP_STEPS + MIN_STEPS steps (MIN_FRACTION of
    this budget is MIN_STEPS steps), then the steps that fit the rest, cut into epochs."""
    probe = (budget.WARMUP_STEPS + budget.MIN_STEPS) * dt
    steps = int((budget_s - probe) / dt + 1e-9)
    return probe, steps // epochs * epochs


def test_training_stops_at_the_budget_and_the_schedules_end_at_the_step_reached(tiny, runs, clocked):
    make, calls = clocked
    clock = make(0.1)
    res = train(tiny(method="byol", time_budget=10.0, epochs=4, knn_monitor_every=1), runs, clock=clock)
    probe, total = _plan_for(10.0, 0.1, 4)
    assert (probe, total) == pytest.approx((0.4, 96))
    log = _rows(res.run_dir / "train_log.csv")
    assert [int(r["step"]) for r in log] == [24, 48, 72, 96]  # 4 equal parts of the 96 steps
    assert res.train_seconds == pytest.approx(probe + total * 0.1)  # the probe counts in the budget
    assert 10.0 - 4 * 0.1 <= res.train_seconds <= 10.0  # stops at the budget (less the parts' rounding)
    # the schedules end at the step reached: lr 0 at the end of the cosine, EMA progress 1 at the last step
    assert float(log[-1]["lr"]) == 0.0 and float(log[-2]["lr"]) > 0.0
    step, total_steps, method = calls[-1]
    assert (step + 1, total_steps, method.total_steps) == (96, 96, 96)
    _, meta = read_encoder(res.checkpoint)
    assert meta["step"] == 96 and meta["budget"]["total_steps"] == 96 and meta["config"]["time_budget"] == 10.0
    assert meta["budget"]["seconds_per_step"] == pytest.approx(0.1)
    mon = _rows(res.run_dir / "monitor.csv")  # (seconds, step, epoch, knn) at every check
    assert [int(r["step"]) for r in mon] == [24, 48, 72, 96] and [int(r["epoch"]) for r in mon] == [1, 2, 3, 4]
    assert [float(r["seconds"]) for r in mon] == pytest.approx([probe + s * 0.1 for s in (24, 48, 72, 96)])


def test_resume_keeps_the_planned_steps(tiny, runs, tmp_path, clocked):
    make, _calls = clocked
    cfg = tiny(method="byol", time_budget=10.0, epochs=4, knn_monitor_every=1)
    whole = train(cfg, tmp_path / "whole", clock=make(0.1))
    cut = train(cfg, runs, clock=make(0.1), stop=lambda epoch, _m: epoch == 2)
    assert cut.epochs == 2
    # a twice faster clock would plan about twice the steps: the resumed run keeps the stored plan
    res = train(cfg, runs, resume=True, clock=make(0.05))
    _, meta = read_encoder(res.checkpoint)
    assert meta["step"] == 96 and meta["budget"]["total_steps"] == 96
    assert [int(r["step"]) for r in _rows(res.run_dir / "train_log.csv")] == [24, 48, 72, 96]
    assert [int(r["epoch"]) for r in _rows(res.run_dir / "monitor.csv")] == [1, 2, 3, 4]
    a, _ = read_encoder(whole.checkpoint)
    b, _ = read_encoder(res.checkpoint)
    assert all(torch.equal(v, b[k]) for k, v in a.items())  # the same weights as without the stop


def test_the_probe_leaves_the_training_unchanged(tiny, runs, tmp_path, clocked):
    """A budget whose plan is 4 whole passes (mog2d's 512 / 64 = 8 steps each) trains the same weights
    as ``epochs=4`` without a budget: the probe ran on a copy, the random state was restored."""
    make, _calls = clocked
    res = train(tiny(method="byol", time_budget=3.7, epochs=4), runs, clock=make(0.1))
    assert read_encoder(res.checkpoint)[1]["budget"]["total_steps"] == 32
    plain = train(tiny(method="byol", epochs=4), tmp_path / "plain")
    a, _ = read_encoder(plain.checkpoint)
    b, _ = read_encoder(res.checkpoint)
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_budgeted_epochs_are_parts_of_passes():
    """Budgeted epochs slice the passes: no image twice before every image once; unbudgeted
    (per_pass = steps) the batches are each epoch's permutation, as before."""
    x = torch.arange(40).view(40, 1)
    cfg = RunConfig(dataset="mog2d", batch_size=4, preset="smoke", seed=3)

    class D:
        pretrain = x

    from ssl_bench.streaming import CorruptFiles, epoch_permutation

    sliced = _Batches(cfg, D(), torch.device("cpu"), 3, CorruptFiles(), per_pass=10)
    seen = torch.cat([xb for e in range(4) for _i, xb in sliced(e, 0)]).flatten()
    assert len(seen) == 48
    assert sorted(seen[:40].tolist()) == list(range(40))  # pass 0: each image once
    assert seen[40:].tolist() == epoch_permutation(40, 3, 1)[:8].tolist()  # then pass 1 from its start
    assert seen[:40].tolist() == epoch_permutation(40, 3, 0).tolist()
    whole = _Batches(cfg, D(), torch.device("cpu"), 10, CorruptFiles())
    assert torch.cat([xb for _i, xb in whole(2, 7)]).flatten().tolist() == epoch_permutation(40, 3, 2)[28:].tolist()


def test_plan_and_probe_arithmetic():
    p = budget.plan(60.0, 3.0, 0.5, 10)
    assert (p.total_steps, p.epochs, p.steps_per_epoch) == (110, 10, 11)  # 114 fit, cut into 10 equal parts
    slow = budget.plan(5.0, 4.0, 0.5, 10)  # 2 steps fit, fewer than 10 parts: one step each, it overshoots
    assert (slow.total_steps, slow.steps_per_epoch) == (10, 1)
    with pytest.raises(ConfigError, match="too small"):
        budget.plan(5.0, 5.5, 0.5, 10)  # the probe used the whole budget
    t = StepClock(0.2)

    def step(_i):
        t.t += t.dt

    seconds, per_step = budget.measure(step, 100.0, t)  # MIN_FRACTION of 100 s = 3 s = 15 steps
    assert per_step == pytest.approx(0.2) and seconds == pytest.approx((budget.WARMUP_STEPS + 15) * 0.2)
    assert budget.BudgetPlan.from_dict(p.to_dict()) == p
    # a thread policy that settles after 2 s: steps of 1 s until then, 0.25 s after; with settle=2 the
    # warm-up outlasts it, and the median ignores one slow step among the timed ones
    d = StepClock(0.0)
    costs = iter([1.0, 1.0, 0.25, 0.25, 3.0] + [0.25] * 100)

    def policy_step(_i):
        d.t += next(costs)

    seconds, per_step = budget.measure(policy_step, 100.0, d, settle=2.0)
    assert per_step == 0.25 and seconds == 5.5  # 2 s of warm-up, then 3 timed steps reach 3 % of 100 s
    mean_probe = budget.measure(lambda _i: setattr(t, "t", t.t + [1.0, 1.0, 0.25][min(_i, 2)]), 100.0, t)[1]
    assert mean_probe == 0.25  # the median of 9 timed steps, one of them slow: their mean is 0.33


def test_config_key_and_flag(tiny, runs, capsys):
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="time_budget"):
            RunConfig(time_budget=bad)
    # configs without a budget keep the hash they had before the key existed
    assert "time_budget" not in RunConfig().training_dict()
    assert RunConfig(time_budget=30.0).hash() != RunConfig(time_budget=60.0).hash()
    assert RunConfig(preset="speedrun").with_preset().time_budget == 60.0
    assert main(["train", "--method", "simclr", "--time-budget", "-5", "--out", str(runs)]) == 2
    assert "time_budget" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--time-budget SECONDS" in capsys.readouterr().out
