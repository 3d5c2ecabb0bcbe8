"""One training step (views + forward + backward + optimiser step) per registered method:
batch 256 of Fashion-MNIST 28x28, each method's default backbone, the harness's own ops
(channels_last images, fp32). ``test_train_step_precision`` compares the layouts and
precisions of :mod:`ssl_bench.precision` on three methods."""
import pytest
import torch

from benchutil import BATCH, ROUNDS, per_second
from ssl_bench import precision as prec
from ssl_bench.build import build_method, data_spec
from ssl_bench.config import RunConfig
from ssl_bench.optim import make_optimizer
from ssl_bench.registry import METHODS
from ssl_bench.views import view_generator


def _step_fn(name, data, precision="fp32", channels_last=True):
    cfg = RunConfig(method=name, dataset="fashion-mnist", batch_size=BATCH, device="cpu", progress=False).with_preset()
    spec = data_spec(data)
    cl = channels_last and prec.wants_channels_last(data.kind, data.input_shape)
    method = prec.model_to_layout(build_method(cfg, spec), cl).train()
    cpu = torch.device("cpu")
    views = method.make_views(spec, cfg.views)
    opt = make_optimizer(cfg.optimizer, method, cfg.lr or method.optim_defaults.get("lr"),
                         cfg.weight_decay or method.optim_defaults.get("weight_decay"))
    x = data.x_train[:BATCH]
    state = {"step": 0}

    def step():
        xb = data.to_float(x)
        vs = [prec.to_layout(data.normalize(v), cl) for v in views(xb, view_generator(0, state["step"], "cpu"))]
        with prec.autocast(cpu, precision):
            loss, _ = method.training_step(vs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        method.on_step_end(min(1.0, state["step"] / 100))
        return loss

    return step


@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_train_step(benchmark, fmnist, name):
    benchmark.group = "train-step"
    step = _step_fn(name, fmnist)
    loss = benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert torch.isfinite(loss)
    per_second(benchmark, BATCH)


@pytest.mark.parametrize("mode", ["fp32-nchw", "fp32-channels_last", "bf16-channels_last"])
@pytest.mark.parametrize("name", ["simclr", "byol", "vicreg"])
def test_train_step_precision(benchmark, fmnist, name, mode):
    """The trainer's CPU choices: NCHW -> channels_last -> + bf16 autocast (``precision``)."""
    benchmark.group = f"train-step-precision-{name}"
    precision, layout = mode.split("-", 1)
    step = _step_fn(name, fmnist, precision=precision, channels_last=layout == "channels_last")
    loss = benchmark.pedantic(step, rounds=max(ROUNDS, 5), iterations=1, warmup_rounds=2)
    assert torch.isfinite(loss)
    per_second(benchmark, BATCH)
