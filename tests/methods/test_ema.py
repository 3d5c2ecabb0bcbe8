"""EMA targets (ssl_bench.ema): the run-length rule, one naming scheme, and the evaluated network."""
import pytest
import torch

from ssl_bench import ema
from ssl_bench.checkpoint import load_resume, read_encoder
from ssl_bench.method import DataSpec
from ssl_bench.registry import METHODS
from ssl_bench.trainer import train

EMA_METHODS = ["byol", "dino", "moco-v3", "ema-jepa", "jepa-masked", "ijepa"]


def test_short_runs_forget_the_init_long_runs_keep_the_paper_tau():
    # the old schedule (cosine from 0.99, not scaled): 21 % of the random init left after 312 steps
    assert ema.init_fraction(0.99, 312, c=0.0) == pytest.approx(0.21, abs=0.005)
    # scaled: 1 - tau_0 = 10 / 312 -> 0.7 % left (exp(-5) ~ 0.0067)
    assert ema.base_tau(0.99, 312) == pytest.approx(1 - 10 / 312)
    assert ema.init_fraction(0.99, 312) == pytest.approx(0.0067, abs=0.0005)
    assert ema.init_fraction(0.99, 312, cosine=False) < 1e-4
    # a long run keeps the paper's momentum exactly, and has forgotten its init anyway
    assert ema.base_tau(0.99, 100_000) == 0.99 and ema.base_tau(0.996, 100_000) == 0.996
    assert ema.init_fraction(0.996, 100_000) < 1e-80
    # the crossover: 10 / (1 - 0.99) = 1000 steps
    assert ema.base_tau(0.99, 1000) == pytest.approx(0.99) and ema.base_tau(0.99, 999) < 0.99
    # ablations keep their meaning: tau = 0 is "target = online" on any run length
    assert ema.base_tau(0.0, 312) == 0.0 and ema.tau_at(0.0, 0.5, 312, cosine=False) == 0.0
    # tiny runs never get a negative momentum
    assert ema.base_tau(0.99, 3) == 0.0
    # outside the trainer (no total_steps) the paper's value is used unchanged
    assert ema.tau_at(0.99, 0.0, None) == 0.99


def _spec(method):
    return (DataSpec("image", (1, 8, 8), 96) if method in ("ijepa", "jepa-masked")
            else DataSpec("vector", (2,), 96))


def _build(method):
    from ssl_bench.backbones import build_backbone

    cls = METHODS.get(method)
    spec = _spec(method)
    if cls.default_backbone and spec.kind in cls.default_backbone:
        name, kw = cls.default_backbone[spec.kind]
    else:
        name, kw = ("cnn-small" if spec.kind == "image" else "mlp"), {}
    torch.manual_seed(0)
    return cls(build_backbone(name, spec.input_shape, spec.kind, **kw), {}, spec)


@pytest.mark.parametrize("method", EMA_METHODS)
def test_every_target_is_named_target_and_moves_by_the_scaled_tau(method):
    m = _build(method)
    frozen = {n.split(".")[0] for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("target_") for n in frozen), frozen
    assert {f"target_{o}" for o in ("backbone",)} <= frozen
    pairs = ema.target_pairs(m)
    assert len(pairs) == len(frozen)
    with torch.no_grad():  # make online != target so that the update is visible
        for p in m.backbone.parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.target_backbone.parameters()]
    online = [p.clone() for p in m.backbone.parameters()]
    m.total_steps = 312
    m.on_step_end(1 / 312)
    c = getattr(m.hp, "ema_c", ema.STEPS_C)  # ijepa: 30 (chosen on validation), the others 10
    tau = ema.tau_at(0.99, 1 / 312, 312, getattr(m.hp, "ema_cosine", True), c)
    assert tau == pytest.approx(1 - c / 312, abs=1e-4)  # not 0.99: scaled to the run length
    for b, o, a in zip(before, online, m.target_backbone.parameters()):
        torch.testing.assert_close(a, tau * b + (1 - tau) * o)


@pytest.mark.parametrize("method", ["dino", "jepa-masked", "byol"])
def test_the_target_keeps_its_own_batchnorm_statistics(method):
    """The momentum update moves parameters only (as MoCo v2/v3, DINO and I-JEPA's reference loops
    do): a target in train mode tracks the statistics of the inputs IT sees, so the evaluated
    teacher / target is not normalised with the statistics of the student's local crops or the
    online encoder's masked images."""
    spec = DataSpec("image", (1, 16, 16), 96)
    cls = METHODS.get(method)
    from ssl_bench.backbones import build_backbone

    torch.manual_seed(0)
    m = cls(build_backbone("cnn-small", spec.input_shape, spec.kind), {}, spec).train()
    m.total_steps = 10
    online_bn = [b for b in m.backbone.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    target_bn = [b for b in m.target_backbone.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    assert online_bn and len(online_bn) == len(target_bn)
    with torch.no_grad():
        m.backbone(torch.randn(64, 1, 16, 16) * 3 + 5)  # online sees one distribution ...
        m.target_backbone(torch.randn(64, 1, 16, 16))  # ... the target another
    target_stats = [b.running_mean.clone() for b in target_bn]
    assert not torch.allclose(online_bn[0].running_mean, target_bn[0].running_mean)
    m.on_step_end(0.1)
    for b, before in zip(target_bn, target_stats):
        torch.testing.assert_close(b.running_mean, before)  # untouched by the update


def test_trainer_tells_methods_the_run_length(tiny, runs, monkeypatch):
    seen = []
    cls = METHODS.get("byol")
    orig = cls.on_step_end

    def spy(self, progress):
        seen.append(self.total_steps)
        orig(self, progress)

    monkeypatch.setattr(cls, "on_step_end", spy)
    train(tiny(method="byol", epochs=2), runs)
    assert set(seen) == {2 * (512 // 64)} and len(seen) == 16


@pytest.mark.parametrize("method,evaluated", [("dino", "teacher"), ("byol", "online")])
def test_checkpoint_stores_the_evaluated_network_and_resume_keeps_the_online_one(tiny, runs, tmp_path, method,
                                                                                evaluated):
    from ssl_bench.embeddings import load_method_from_checkpoint

    cfg = tiny(method=method, epochs=2)
    res = train(cfg, runs)
    weights, meta = read_encoder(res.checkpoint)
    assert meta["evaluated"] == evaluated
    state = load_resume(res.run_dir / "checkpoints" / "resume.pt")["method"]
    stored = "target_backbone" if evaluated != "online" else "backbone"
    other = "backbone" if evaluated != "online" else "target_backbone"
    for k, v in weights.items():
        assert torch.equal(v, state[f"{stored}.{k}"]), k
    assert not all(torch.equal(v, state[f"{other}.{k}"]) for k, v in weights.items())
    # the checkpoint loads into a fresh backbone
    m, _, _ = load_method_from_checkpoint(res.checkpoint, torch.device("cpu"))
    for k, v in m.backbone.state_dict().items():
        assert torch.equal(v, weights[k])
    # resume restores the online network (not the evaluated one): a crashed run, resumed, ends
    # bitwise equal to the uninterrupted one (it would not if resume started from the teacher)
    class Crash(Exception):
        pass

    def boom(epoch, logs):
        if epoch == 1:
            raise Crash()

    crashed = tmp_path / "crashed"
    with pytest.raises(Crash):
        train(cfg, crashed, callbacks=[boom])
    resumed = train(cfg, crashed, resume=True)
    assert resumed.resumed_from == 1
    for k, v in weights.items():
        assert torch.equal(v, read_encoder(resumed.checkpoint)[0][k]), k
    end = load_resume(resumed.run_dir / "checkpoints" / "resume.pt")["method"]
    for k, v in state.items():
        assert torch.equal(v, end[k]), k
