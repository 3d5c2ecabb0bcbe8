"""random-init's BN statistics are re-estimated on the training images (issue #34)."""

import torch

from ssl_bench.backbones import build_backbone
from ssl_bench.bn_calibration import batchnorm_layers, recalibrate_batchnorm
from ssl_bench.pipeline import evaluate_baselines
from ssl_bench.registry import EVALUATORS
from ssl_bench.trainer import load_data


def test_recalibrated_statistics_are_those_of_the_training_images(tiny):
    data = load_data(tiny(dataset="digits")).subset(400, 100, seed=0)
    torch.manual_seed(0)
    net = build_backbone("cnn-small", data.input_shape, data.kind)
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    assert recalibrate_batchnorm(net, data, torch.device("cpu"), batch_size=1000) == 400
    assert not net.training and not any(m.training for m in net.modules())
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # weights untouched
    # one batch of all 400 images: the first BN's statistics are exactly those of conv1's output
    bn = batchnorm_layers(net)[0]
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        h = conv(data.normalize(data.to_float(data.x_train)))
    mean = h.mean((0, 2, 3))
    var = h.transpose(0, 1).flatten(1).var(1, unbiased=True)
    assert torch.allclose(bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(bn.running_var, var, rtol=1e-4)
    assert float((var - 1).abs().max()) > 0.1  # the initial variance 1 did not fit these images
    assert bn.momentum == 0.1  # restored


def test_a_net_without_batchnorm_is_left_as_it_is(tiny):
    data = load_data(tiny(dataset="mog2d"))
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.LayerNorm(4))
    assert recalibrate_batchnorm(net, data, torch.device("cpu")) == 0 and not net.training


def test_random_init_rows_say_their_statistics_are_recalibrated(tiny, tmp_path):
    cfg = tiny(dataset="digits", eval_train_subset=300, eval_test_subset=100)
    rows = evaluate_baselines(cfg, tmp_path, load_data(cfg), EVALUATORS.resolve(["knn"]), ["simclr", "mae"])
    kw = {(r["method"], r["backbone"]): r["config"]["method_kwargs"] for r in rows}
    assert kw[("random-init", "cnn-small")] == {"bn_stats": "train"}
    assert kw[("pixels", "-")] == {}
    vit = next(b for m, b in kw if b.startswith("vit"))
    assert kw[("random-init", vit)] == {}  # a ViT has no BN layer: nothing was recalibrated
