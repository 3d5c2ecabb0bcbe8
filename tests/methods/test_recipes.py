"""Recipe pieces that carry a method's gain (issue 12, item 6), each against its behaviour:
the harness's per-step declarations (frozen parameters, gradient clipping, weight-decay
schedule), SwAV's queue and frozen prototypes, DINO's and LeJEPA's multi-crop losses, DINO's
frozen last layer, MoCo-v2's split batch norm with shuffled keys, the MoCo-v3 ResNet recipe."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench import losses
from ssl_bench.checkpoint import load_resume
from ssl_bench.config import RunConfig
from ssl_bench.datasets import load_dataset
from ssl_bench.errors import ConfigError
from ssl_bench.heads import SplitBatchNorm, forward_by_size, split_batchnorm_
from ssl_bench.method import Method, TrainClock
from ssl_bench.optim import clip_gradients_, cosine_value
from ssl_bench.registry import METHODS, register_method
from ssl_bench.trainer import build_method, data_spec, train
from ssl_bench.views import view_generator

_DIGITS = {}


def digits():
    if not _DIGITS:
        _DIGITS["d"] = load_dataset("digits")
    return _DIGITS["d"]


def cfg(method, **kw):
    base = dict(method=method, dataset="digits", preset="smoke", epochs=1, batch_size=32, train_subset=96,
                eval_train_subset=64, eval_test_subset=32, progress=False, device="cpu", precision="fp32",
                log_every=1)
    base.update(kw)
    return RunConfig(**base)


def views_of(m, n=32, step=0, start=0):
    d = digits()
    mv = m.make_views(data_spec(d), {})
    return [d.normalize(v) for v in mv(d.to_float(d.x_train[start:start + n]), view_generator(0, step, "cpu"))]


def built(method, **opts):
    torch.manual_seed(0)
    return build_method(cfg(method, method_kwargs=opts).with_preset(), data_spec(digits())).train()


# ------------------------------------------------------------------------- harness declarations
class _Probe(Method):
    """A method whose loss has known gradients: 10 on every entry of ``w`` (1-D, no weight decay),
    1 on ``a``; ``m`` (2-D) only feels weight decay. It records its parameters after each step."""

    defaults = dict(clip=0.0, freeze_epochs=0.0, wd_end=-1.0)
    history: list = []

    def __init__(self, backbone, hp=None, spec=None):
        super().__init__(backbone, hp, spec)
        self.w = nn.Parameter(torch.zeros(16))
        self.a = nn.Parameter(torch.zeros(3))
        self.m = nn.Parameter(torch.ones(2, 2))

    def training_step(self, views):
        return 10 * self.w.sum() + self.a.sum() + 0 * self.m.sum() + 0 * self.backbone(views[0]).sum(), {}

    def frozen_parameters(self):
        return ("a",) if self.clock.epoch < self.hp.freeze_epochs else ()

    def grad_clip(self):
        return self.hp.clip

    def weight_decay_end(self):
        return self.hp.wd_end if self.hp.wd_end >= 0 else None

    def on_step_end(self, progress):
        _Probe.history.append((self.clock, self.w.detach().clone(), self.a.detach().clone()))


@pytest.fixture
def probe():
    register_method("test-probe")(_Probe)
    _Probe.history = []
    yield _Probe
    METHODS.unregister("test-probe")


def test_harness_honours_clip_frozen_parameters_and_clock(probe, tmp_path):
    c = cfg("test-probe", epochs=2, optimizer="sgd", lr=0.1, warmup_frac=0.0, weight_decay=0.0,
            method_kwargs=dict(clip=1.0, freeze_epochs=1.0))
    train(c, tmp_path)
    h = probe.history
    assert [k.step for k, _, _ in h] == list(range(6)) and all(k.steps_per_epoch == 3 and k.total_steps == 6
                                                             for k, _, _ in h)
    # step 0: SGD's first update is lr * grad; grad 10 per entry (norm 40) clipped to norm 1
    torch.testing.assert_close(h[0][1], torch.full((16,), -0.1 * 10 / 40), rtol=1e-4, atol=0)
    # ``a`` is frozen through epoch 1 (steps 0-2), then moves
    assert all(torch.equal(a, torch.zeros(3)) for _, _, a in h[:3])
    assert (h[3][2] < 0).all()


def test_harness_without_clip_takes_the_full_gradient(probe, tmp_path):
    train(cfg("test-probe", optimizer="sgd", lr=0.1, warmup_frac=0.0, weight_decay=0.0), tmp_path)
    torch.testing.assert_close(probe.history[0][1], torch.full((16,), -1.0), rtol=1e-5, atol=0)
    assert (probe.history[0][2] < 0).all()  # nothing frozen by default


def test_harness_weight_decay_schedule(probe, tmp_path):
    res = train(cfg("test-probe", epochs=2, weight_decay=0.04, method_kwargs=dict(wd_end=0.4)), tmp_path)
    groups = load_resume(res.run_dir / "checkpoints" / "resume.pt")["optimizer"]["param_groups"]
    wds = sorted(g["weight_decay"] for g in groups)
    # the last step (5 of 6) used cosine(0.04 -> 0.4) at 5/6; 1-D parameters keep 0
    assert wds[0] == 0.0 and wds[-1] == pytest.approx(0.4 + (0.04 - 0.4) * 0.5 * (1 + math.cos(math.pi * 5 / 6)))
    assert cosine_value(0.04, 0.4, 0.0) == pytest.approx(0.04) and cosine_value(0.04, 0.4, 1.0) == pytest.approx(0.4)


def test_per_tensor_clipping():
    lin = nn.Linear(3, 2)
    lin.weight.grad = torch.full((2, 3), 2.0)  # norm sqrt(24) > 3: scaled to 3
    lin.bias.grad = torch.tensor([0.3, 0.4])  # norm 0.5 < 3: unchanged
    clip_gradients_(lin, 3.0)
    assert lin.weight.grad.norm().item() == pytest.approx(3.0, rel=1e-5)
    assert torch.equal(lin.bias.grad, torch.tensor([0.3, 0.4]))


# --------------------------------------------------------------------- frozen heads, by method
@pytest.mark.parametrize("method,name", [("swav", "prototypes.weight"), ("dino", "head.last.weight")])
def test_frozen_through_epoch_one_then_trained(method, name, tmp_path):
    init = built(method).state_dict()[name]
    # dino's freeze is capped at 1% of the run (test below); uncapped here to test the epoch count
    uncap = {"freeze_last_layer_frac": 1.0} if method == "dino" else {}
    one = train(cfg(method, epochs=1, method_kwargs=uncap), tmp_path / "one")
    two = train(cfg(method, epochs=2, method_kwargs=uncap), tmp_path / "two")
    w1 = load_resume(one.run_dir / "checkpoints" / "resume.pt")["method"][name]
    w2 = load_resume(two.run_dir / "checkpoints" / "resume.pt")["method"][name]
    assert torch.equal(w1, init), f"{method}: {name} moved during epoch 1"
    assert not torch.equal(w2, init), f"{method}: {name} never trained"
    off = train(cfg(method, epochs=1, method_kwargs={("freeze_prototypes_epochs" if method == "swav"
                                                      else "freeze_last_layer_epochs"): 0.0}), tmp_path / "off")
    assert not torch.equal(load_resume(off.run_dir / "checkpoints" / "resume.pt")["method"][name], init)


def test_dino_freeze_lasts_one_epoch_but_at_most_one_percent_of_the_run():
    m = built("dino")
    frozen = {}
    for steps_per_epoch, total in ((156, 312), (1000, 100_000)):
        frozen[total] = []
        for s in range(total):
            m.clock = TrainClock(s, steps_per_epoch, total)
            if m.frozen_parameters():
                frozen[total].append(s)
    assert frozen[312] == [0, 1, 2, 3]  # 1% of 312 steps: steps 0-3, not the first epoch's 156
    assert frozen[100_000] == list(range(1000))  # a long run: the paper's one epoch (1% = 1000 steps too)
    off = built("dino", freeze_last_layer_frac=0.0)
    off.clock = TrainClock(0, 156, 312)
    assert off.frozen_parameters() == ()
    with pytest.raises(ConfigError, match="freeze_last_layer_frac"):
        built("dino", freeze_last_layer_frac=1.5)


# ------------------------------------------------------------------------------------------ SwAV
def test_swav_multicrop_codes_from_globals_predicted_by_all_crops():
    m = built("swav", queue_length=0)
    vs = views_of(m)
    assert len(vs) == 8 and vs[2].shape[-1] == 4  # digits are 8 px: locals at 4
    torch.manual_seed(1)
    loss, _ = m.training_step(vs)
    n = vs[0].shape[0]
    z = F.normalize(m.projector(forward_by_size(m.backbone, vs)), dim=1)
    s = (z @ F.normalize(m.prototypes.weight, dim=1).t()).split(n)
    want = 0
    for i in range(2):
        q = losses.sinkhorn_knopp(s[i].detach(), 0.05, 3)
        want += sum(-(q * F.log_softmax(s[v] / 0.1, 1)).sum(1).mean() for v in range(8) if v != i) / 7
    torch.testing.assert_close(loss, want / 2, rtol=1e-5, atol=1e-6)


def test_swav_queue_fills_from_its_start_and_is_used_once_full():
    m = built("swav", queue_length=64, queue_start_epoch=1.0, n_local=0)
    vs = views_of(m)
    n = vs[0].shape[0]
    m.clock = TrainClock(step=2, steps_per_epoch=3, total_steps=30)  # before the start: untouched
    m.training_step(vs)
    assert not m.queue.any()
    m.clock = TrainClock(step=3, steps_per_epoch=3, total_steps=30)  # first filling step: not used yet
    with torch.no_grad():
        z = F.normalize(m.projector(forward_by_size(m.backbone, vs)), dim=1)
    ref = built("swav", queue_length=0, n_local=0)
    ref.load_state_dict({k: v for k, v in m.state_dict().items() if k != "queue"}, strict=False)
    torch.testing.assert_close(m.training_step(vs)[0], ref.training_step(vs)[0])
    torch.testing.assert_close(m.queue[0, :n], z[:n])  # newest first
    torch.testing.assert_close(m.queue[1, :n], z[n:])
    assert not m.queue[:, n:].any()
    m.clock = TrainClock(step=4, steps_per_epoch=3, total_steps=30)
    m.training_step(views_of(m, start=32, step=4))  # other images: the queue then differs from the batch
    m.clock = TrainClock(step=5, steps_per_epoch=3, total_steps=30)  # 64 entries: full, used now
    before = m.queue.clone()
    loss, _ = m.training_step(vs)
    z = F.normalize(m.projector(forward_by_size(m.backbone, vs)), dim=1)
    protos = F.normalize(m.prototypes.weight, dim=1)
    s = (z @ protos.t()).split(n)
    want = 0
    for i in range(2):
        q = losses.sinkhorn_knopp(torch.cat([before[i] @ protos.t(), s[i]]).detach(), 0.05, 3)[-n:]
        want += -(q * F.log_softmax(s[1 - i] / 0.1, 1)).sum(1).mean()
    torch.testing.assert_close(loss, want / 2, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(loss, ref.training_step(vs)[0])


def test_swav_and_dino_reject_bad_options():
    for method, opts in [("swav", dict(n_local=-1)), ("swav", dict(queue_length=-5)),
                         ("dino", dict(clip_grad=-1.0)), ("dino", dict(n_local=-2)),
                         ("lejepa", dict(num_views=1, n_local=0)), ("moco-v2", dict(bn_splits=0)),
                         ("moco-v3", dict(proj_layers=0))]:
        with pytest.raises(ConfigError):
            built(method, **opts)


# ------------------------------------------------------------------------------------------ DINO
def test_dino_teacher_sees_globals_student_all_crops():
    m = built("dino")
    vs = views_of(m)
    seen = {"student": [], "teacher": []}
    m.backbone.register_forward_hook(lambda mod, i, o: seen["student"].append(tuple(i[0].shape)))
    m.target_backbone.register_forward_hook(lambda mod, i, o: seen["teacher"].append(tuple(i[0].shape)))
    loss, _ = m.training_step(vs)
    assert seen["teacher"] == [(64, 1, 8, 8)]
    assert seen["student"] == [(64, 1, 8, 8), (192, 1, 4, 4)]
    # 2 teacher crops x 7 other student crops, averaged
    with torch.no_grad():
        s = m.head(forward_by_size(m.backbone, vs)).split(32)
        t = m.target_head(m.target_backbone(torch.cat(vs[:2]))).split(32)
    want = sum(losses.dino_loss(s[v], t[i], m.center, 0.1, 0.04) for i in range(2) for v in range(8) if v != i) / 14
    torch.testing.assert_close(loss.detach(), want, rtol=1e-5, atol=1e-6)
    assert m.grad_clip() == 3.0 and m.weight_decay_end() == 0.4 and m.optim_defaults["weight_decay"] == 0.04


def test_dino_and_byol_family_solarise_only_view_two():
    for method in ("dino", "byol", "barlow-twins", "vicreg"):
        mv = built(method).make_views(data_spec(digits()), {})
        ts = mv.globals_ if hasattr(mv, "globals_") else mv.transforms
        assert [t.solarize_p for t in ts[:2]] == [0.0, 0.2], method
        off = built(method, solarize_p2=0.0).make_views(data_spec(digits()), {})
        assert all(t.solarize_p == 0 for t in (off.globals_ if hasattr(off, "globals_") else off.transforms))


# ---------------------------------------------------------------------------------------- LeJEPA
def test_lejepa_every_view_predicts_the_global_centre():
    m = built("lejepa")
    vs = views_of(m)
    assert [v.shape[-1] for v in vs] == [8, 8] + [4] * 6
    torch.manual_seed(0)
    _, logs = m.training_step(vs)
    with torch.no_grad():
        z = m.projector(forward_by_size(m.backbone, vs)).reshape(8, 32, -1)
    want = (z[:2].mean(0, keepdim=True) - z).pow(2).mean()
    torch.testing.assert_close(logs["inv"], want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(want, losses.lejepa_invariance(z))  # the centre is not that of all views


# --------------------------------------------------------------------------------------- MoCo v2
def test_split_batchnorm_normalises_each_chunk_with_its_own_statistics():
    torch.manual_seed(0)
    bn = SplitBatchNorm(3, 4)
    nn.init.uniform_(bn.weight), nn.init.uniform_(bn.bias)
    x = torch.randn(16, 3, 5, 5).contiguous(memory_format=torch.channels_last) * 3 + 1
    y = bn(x)
    chunks = [(c - c.mean((0, 2, 3), keepdim=True)) / (c.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
              for c in x.chunk(4)]
    want = torch.cat(chunks) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    full = nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, True)
    assert not torch.allclose(y, full, atol=1e-3)  # not the whole batch's statistics
    torch.testing.assert_close(bn.running_mean, torch.stack([0.1 * c.mean((0, 2, 3)) for c in x.chunk(4)]).mean(0))
    bn.eval()
    ref = nn.BatchNorm2d(3)
    ref.load_state_dict(bn.state_dict())
    torch.testing.assert_close(bn(x), ref.eval()(x))  # evaluation: ordinary BN on running statistics


def test_moco_v2_both_encoders_split_bn_and_keys_use_other_sub_batches():
    m = built("moco-v2")
    for part in ("backbone", "projector", "key_backbone", "key_projector"):
        bns = [b for b in getattr(m, part).modules() if isinstance(b, nn.modules.batchnorm._BatchNorm)]
        assert bns and all(isinstance(b, SplitBatchNorm) and b.num_splits == 8 for b in bns), part
    assert not any(isinstance(b, SplitBatchNorm) for b in built("moco-v2", bn_splits=1).modules())
    assert m.sync_batchnorm is False

    # BN-only encoders: the feature is the input normalised by its BN statistics, nothing else
    class BNOnly(nn.Module):
        out_dim = 6

        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(6, affine=False)

        def forward(self, x):
            return self.bn(x)

    torch.manual_seed(0)
    x = torch.randn(64, 6) * 2
    leaky = type(m)(BNOnly(), dict(bn_splits=1, proj_hidden_dim=8, proj_dim=4)).train()
    # without splits, a key is normalised with exactly its query's statistics: the pair is marked
    torch.testing.assert_close(leaky.key_backbone(x), leaky.backbone(x))
    split = type(m)(BNOnly(), dict(bn_splits=8, proj_hidden_dim=8, proj_dim=4)).train()
    q = split.backbone(x)
    perm = torch.randperm(64, generator=split.clock.generator())  # the shuffle draws from the step's stream
    k = split._key_embeddings(x)
    inv = torch.argsort(perm)
    kfeat = split.key_backbone(x[perm])[inv]
    torch.testing.assert_close(k, F.normalize(split.key_projector(split.key_backbone(x[perm]))[inv], dim=1))
    # the key of image i is normalised with the statistics of a random sub-batch of 8 images,
    # its query with those of its own sub-batch: the two agree only if the sets coincide
    q_sets = [set(range(i // 8 * 8, i // 8 * 8 + 8)) for i in range(64)]
    k_sets = [set(perm[int(inv[i]) // 8 * 8: int(inv[i]) // 8 * 8 + 8].tolist()) for i in range(64)]
    same = torch.tensor([a == b for a, b in zip(q_sets, k_sets)])
    equal = (q - kfeat).abs().amax(1) < 1e-5
    assert torch.equal(equal, same) and same.float().mean() < 0.3
    with pytest.raises(ConfigError, match="divisible by bn_splits"):
        split.training_step([x[:60], x[:60]])


def test_split_batchnorm_conversion_keeps_parameters():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    w = net[1].weight
    split_batchnorm_(net, 2)
    assert isinstance(net[1], SplitBatchNorm) and net[1].weight is w
    net(torch.randn(7, 3))  # an odd batch falls back to one sub-batch instead of failing


# --------------------------------------------------------------------------------------- MoCo v3
def test_moco_v3_resnet_recipe_defaults():
    m = built("moco-v3")
    assert m.hp.temperature == 1.0
    assert sum(isinstance(x, nn.Linear) for x in m.projector.modules()) == 2
    last = m.projector.net[-1]
    assert isinstance(last, nn.BatchNorm1d) and not last.affine
    assert sum(isinstance(x, nn.Linear) for x in built("moco-v3", proj_layers=3).projector.modules()) == 3


def test_multi_crop_methods_refuse_a_fixed_size_backbone_in_one_line():
    torch.manual_seed(0)
    for method in ("swav", "dino", "lejepa"):
        m = build_method(cfg(method, backbone="mlp").with_preset(), data_spec(digits()))
        with pytest.raises(ConfigError, match="cannot encode the 4x4 local crops"):
            m.make_views(data_spec(digits()), {})
        m2 = build_method(cfg(method, backbone="mlp", method_kwargs={"n_local": 0}).with_preset(), data_spec(digits()))
        assert len(m2.make_views(data_spec(digits()), {})(digits().to_float(digits().x_train[:4]),
                                                           view_generator(0, 0, "cpu"))) == 2
