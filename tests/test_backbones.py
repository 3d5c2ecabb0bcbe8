import pytest
import torch

from ssl_bench.backbones import build_backbone
from ssl_bench.errors import ConfigError


def test_small_cnn_size_and_shapes():
    net = build_backbone("cnn-small", (1, 28, 28), "image")
    assert 90_000 < sum(p.numel() for p in net.parameters()) < 95_000
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 128) == (3, net.out_dim)
    assert build_backbone("auto", (3, 32, 32), "image")(torch.zeros(2, 3, 32, 32)).shape == (2, 128)


def test_mlp_for_vectors():
    net = build_backbone("auto", (2,), "vector")
    assert net(torch.zeros(4, 2)).shape == (4, net.out_dim)


def test_timm_backbone_with_adapted_channels():
    net = build_backbone("timm:resnet18", (1, 28, 28), "image")
    assert net.out_dim == 512
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 512)


def test_bad_backbones():
    with pytest.raises(ConfigError, match="unknown backbone"):
        build_backbone("resnet-9000", (1, 28, 28), "image")
    with pytest.raises(ConfigError, match="timm backbone"):
        build_backbone("timm:not_a_model_xyz", (1, 28, 28), "image")
    with pytest.raises(ConfigError, match="vector"):
        build_backbone("cnn-small", (2,), "vector")


def test_train_with_a_timm_backbone(tiny, runs):
    from ssl_bench.trainer import train

    cfg = tiny(dataset="digits", backbone="timm:resnet18", epochs=1, batch_size=32, train_subset=64,
               eval_train_subset=64, eval_test_subset=32)
    res = train(cfg, runs)
    assert res.checkpoint.name == "epoch_0001.safetensors" and "timm-resnet18" in res.run_dir.name
