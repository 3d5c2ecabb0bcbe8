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


# -- the registry of backbones -------------------------------------------------------------------
def _params(net):
    return sum(p.numel() for p in net.parameters())


def test_backbones_are_registered_by_name():
    from ssl_bench import BACKBONES

    names = set(BACKBONES.names())
    assert {"cnn-small", "cnn-wide", "mlp", "resnet18-cifar", "resnet50-cifar", "vit-mini", "timm:<model>"} <= names
    assert "timm:resnet18" in BACKBONES and "resnet-9000" not in BACKBONES and "nope:resnet18" not in BACKBONES
    assert BACKBONES.lookup("timm:resnet18")[1] == "resnet18" and BACKBONES.lookup("cnn-wide")[1] is None


def test_unknown_backbone_is_one_line_listing_known_ones():
    from ssl_bench.config import RunConfig

    for make in (lambda: build_backbone("resnet-9000", (1, 28, 28), "image"),
                 lambda: RunConfig(backbone="resnet-9000"), lambda: RunConfig(backbone="timmm:resnet18")):
        with pytest.raises(ConfigError) as err:
            make()
        msg = str(err.value)
        assert msg.startswith("unknown backbone") and "\n" not in msg
        assert "cnn-small" in msg and "resnet18-cifar" in msg and "timm:<model>" in msg
    RunConfig(backbone="resnet18-cifar")  # registered names and timm models pass validation
    RunConfig(backbone="timm:resnet18")


def test_list_backbones_cli(capsys):
    import json

    from ssl_bench.cli import main

    assert main(["list", "backbones", "--json"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert names == sorted(names) and {"cnn-small", "cnn-wide", "resnet18-cifar", "resnet50-cifar", "mlp",
                                       "timm:<model>"} <= set(names)
    assert main(["list", "backbones"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert "11.2M" in lines["resnet18-cifar"] and "timm:resnet18" in lines["timm:<model>"]
    assert main(["train", "--backbone", "resnet-9000", "--dataset", "mog2d"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown backbone 'resnet-9000'" in err and "cnn-wide" in err


def test_backbone_kinds_options_and_names():
    from ssl_bench import register_backbone

    with pytest.raises(ConfigError, match="needs image data"):
        build_backbone("resnet18-cifar", (2,), "vector")
    with pytest.raises(ConfigError, match="rejected backbone_kwargs"):
        build_backbone("cnn-wide", (1, 28, 28), "image", widthz=(8, 16))
    assert build_backbone("cnn-wide", (1, 28, 28), "image", widths=(8, 16)).out_dim == 16
    with pytest.raises(ValueError, match="family"):
        register_backbone("acme:net")(lambda shape: None)


# -- CIFAR-style ResNets -------------------------------------------------------------------------
@pytest.mark.parametrize("name,out_dim", [("resnet18-cifar", 512), ("resnet50-cifar", 2048)])
def test_cifar_resnets_shapes_and_stem(name, out_dim):
    for shape in [(1, 28, 28), (3, 32, 32)]:
        net = build_backbone(name, shape, "image").eval()
        x = torch.randn(1, *shape)
        with torch.no_grad():
            fmap, out = net.feature_map(x), net(x)
        assert tuple(fmap.shape) == (1, out_dim, 4, 4)  # 28 and 32 both end on a 4x4 map
        assert net.out_dim == out_dim and out.shape == (1, out_dim)
        torch.testing.assert_close(out, fmap.mean(dim=(2, 3)))  # the output is the GAP of that map
        first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        assert first.in_channels == shape[0] and first.kernel_size == (3, 3) and first.stride == (1, 1)
        assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    if name == "resnet18-cifar":  # any channel count, any size
        assert build_backbone(name, (5, 20, 20), "image").eval()(torch.randn(1, 5, 20, 20)).shape == (1, out_dim)


def test_cifar_resnet_parameter_counts_match_torchvision_less_stem_and_fc():
    import torchvision

    for ours, ref in [("resnet18-cifar", torchvision.models.resnet18), ("resnet50-cifar", torchvision.models.resnet50)]:
        tv = ref()
        # ours = torchvision's ResNet without the classifier, with a 3x3 instead of a 7x7 stem conv
        expected = _params(tv) - _params(tv.fc) - tv.conv1.weight.numel() + 3 * 3 * 3 * 64
        assert _params(build_backbone(ours, (3, 32, 32), "image")) == expected
    assert 11.1e6 < _params(build_backbone("resnet18-cifar", (3, 32, 32), "image")) < 11.3e6


def test_cifar_resnet_keeps_a_spatial_map_that_the_imagenet_stem_loses():
    x = torch.randn(2, 1, 28, 28)
    ours = build_backbone("resnet18-cifar", (1, 28, 28), "image").eval()
    timm_r18 = build_backbone("timm:resnet18", (1, 28, 28), "image").eval()
    h, w = ours.feature_map(x).shape[-2:]
    assert h >= 4 and w >= 4
    assert tuple(timm_r18.feature_map(x).shape[-2:]) == (1, 1)


def test_cifar_resnet_trains_a_step_and_zero_init_residual():
    net = build_backbone("resnet18-cifar", (1, 28, 28), "image", zero_init_residual=True)
    assert all(float(b.bn2.weight.detach().abs().sum()) == 0 for s in net.stages for b in s)
    net.train()
    out = net(torch.randn(4, 1, 28, 28))
    out.pow(2).mean().backward()
    assert net.stem[0].weight.grad is not None and torch.isfinite(net.stem[0].weight.grad).all()


# -- the wide CPU CNN ----------------------------------------------------------------------------
def test_cnn_wide_size_and_shapes():
    net = build_backbone("cnn-wide", (1, 28, 28), "image").eval()
    assert 1.45e6 < _params(net) < 1.6e6
    x = torch.randn(3, 1, 28, 28)
    assert net(x).shape == (3, 512) == (3, net.out_dim)
    assert tuple(net.feature_map(x).shape) == (3, 512, 4, 4)
    assert [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)] == [64, 128, 256, 512]
    assert build_backbone("cnn-wide", (3, 32, 32), "image")(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def test_train_with_a_registered_backbone_channels_last(tiny, runs):
    from ssl_bench.trainer import train

    cfg = tiny(dataset="digits", backbone="cnn-wide", backbone_kwargs={"widths": [8, 16, 16, 32]}, epochs=1,
               batch_size=32, train_subset=64, eval_train_subset=64, eval_test_subset=32)
    res = train(cfg, runs)
    assert res.checkpoint.is_file() and "-cnn-wide-" in res.run_dir.name


# -- third-party backbones -----------------------------------------------------------------------
def test_register_backbone_decorator_and_entry_point(tmp_path, monkeypatch):
    import sys
    import textwrap

    from ssl_bench import BACKBONES, register_backbone
    from ssl_bench.config import RunConfig

    @register_backbone("acme-linear", kinds=("vector",))
    def acme_linear(input_shape, width=7):
        """A linear map (test plugin)."""
        net = torch.nn.Linear(input_shape[0], width)
        net.out_dim = width
        return net

    pkg = tmp_path / "site" / "acme_bb"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(textwrap.dedent('''
        import torch

        def build(input_shape, **kw):
            """Acme's flattening backbone (entry-point test plugin)."""
            net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(5))
            net.out_dim = 5
            return net

        def broken(input_shape):
            return torch.nn.Identity()  # no out_dim
    '''))
    dist = tmp_path / "site" / "acme_bb-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-bb\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[ssl_bench.backbones]\nacme-flat = acme_bb.plugin:build\nacme-broken = acme_bb.plugin:broken\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    try:
        BACKBONES.reload()
        assert {"acme-linear", "acme-flat", "acme-broken"} <= set(BACKBONES.names())
        assert "entry point" in BACKBONES.source("acme-flat")
        assert build_backbone("acme-linear", (3,), "vector", width=4)(torch.zeros(2, 3)).shape == (2, 4)
        with pytest.raises(ConfigError, match="needs vector data"):
            build_backbone("acme-linear", (1, 8, 8), "image")
        assert build_backbone("acme-flat", (1, 8, 8), "image")(torch.zeros(2, 1, 8, 8)).shape == (2, 5)
        with pytest.raises(ConfigError, match="integer out_dim"):
            build_backbone("acme-broken", (1, 8, 8), "image")
        RunConfig(backbone="acme-flat")
    finally:
        for n in ("acme-linear", "acme-flat", "acme-broken"):
            BACKBONES.unregister(n)
        sys.modules.pop("acme_bb.plugin", None)
        sys.modules.pop("acme_bb", None)


# -- vit-mini: the small ViT of ijepa and mae -----------------------------------------------------
#: the options ijepa and mae built their ViT from before it was registered as ``vit-mini`` (written
#: out here, not imported: the committed rows that name timm:vit_tiny_patch16_224 were built so)
LEGACY_VIT = ("timm:vit_tiny_patch16_224", {"img_size": "auto", "patch_size": "auto", "embed_dim": 96, "depth": 4,
                                            "num_heads": 3, "class_token": False, "global_pool": "avg",
                                            "dynamic_img_size": True})


def test_vit_mini_is_the_legacy_vit_bit_for_bit():
    """Same parameter names, same initial weights under one seed, same output on 28x28 input."""
    torch.manual_seed(0)
    new = build_backbone("vit-mini", (1, 28, 28), "image").eval()
    torch.manual_seed(0)
    old = build_backbone(LEGACY_VIT[0], (1, 28, 28), "image", **LEGACY_VIT[1]).eval()
    a, b = new.state_dict(), old.state_dict()
    assert list(a) == list(b) and len(a) > 10
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert type(new) is type(old) and new.out_dim == old.out_dim == 96
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(new(x), old(x))
    vit = new.model
    assert vit.patch_embed.patch_size == (7, 7) and len(vit.blocks) == 4 and vit.embed_dim == 96
    assert vit.num_prefix_tokens == 0 and vit.global_pool == "avg"
    assert 440_000 < _params(new) < 460_000


def test_vit_mini_options_and_sizes():
    net = build_backbone("vit-mini", (1, 28, 28), "image", patch_size=4)
    assert net.model.patch_embed.patch_size == (4, 4)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 96)
    assert build_backbone("vit-mini", (3, 32, 32), "image").model.patch_embed.patch_size == (8, 8)
    with pytest.raises(ConfigError, match="needs image data"):
        build_backbone("vit-mini", (2,), "vector")
    from ssl_bench.config import RunConfig

    cfg = RunConfig(backbone="vit-mini", backbone_kwargs={"patch_size": 4})  # --backbone / --set pass validation
    assert cfg.backbone == "vit-mini"


def test_vit_label_says_width_depth_patches_and_tokens():
    from ssl_bench.backbones import backbone_label, label_name, real_backbone_name
    from ssl_bench.data import image_size

    assert image_size("fashion-mnist") == (28, 28) and image_size("cifar10") == (32, 32)
    assert image_size("stl10") == (96, 96) and image_size("stl10", {"image_size": 64}) == (64, 64)
    assert image_size("imagefolder") == (64, 64) and image_size("mog2d") is None and image_size("nope") is None
    assert backbone_label("vit-mini", {}, (28, 28)) == "vit-mini (w96 d4, 7-px patches, 16 tokens)"
    assert backbone_label("vit-mini", {"patch_size": 4}, (28, 28)) == "vit-mini (w96 d4, 4-px patches, 49 tokens)"
    assert backbone_label("vit-mini", {}, (32, 32)) == "vit-mini (w96 d4, 8-px patches, 16 tokens)"
    assert backbone_label("vit-mini", {}, None) == "vit-mini (w96 d4, patches from the image size)"
    assert backbone_label(*LEGACY_VIT, (28, 28)) == "timm:vit_tiny_patch16_224 (w96 d4, 7-px patches, 16 tokens)"
    assert backbone_label("timm:vit_tiny_patch16_224", {}, None) == (
        "timm:vit_tiny_patch16_224 (w192 d12, 16-px patches, 196 tokens)"  # the real ViT-Ti/16
    )
    assert backbone_label("cnn-small", {}, (28, 28)) == "cnn-small" and backbone_label("timm:resnet18") == "timm:resnet18"
    assert label_name("vit-mini (w96 d4, 7-px patches, 16 tokens)") == "vit-mini" and label_name("mlp") == "mlp"
    # rows written before vit-mini had a name: their method chose the backbone ("auto")
    auto, chosen = {"backbone": "auto"}, {"backbone": "timm:vit_tiny_patch16_224"}
    assert real_backbone_name("mae", "timm:vit_tiny_patch16_224", auto) == "vit-mini"
    assert real_backbone_name("random-init", "timm:vit_tiny_patch16_224", auto) == "vit-mini"
    assert real_backbone_name("mae", "timm:vit_tiny_patch16_224", chosen) == "timm:vit_tiny_patch16_224"
    assert real_backbone_name("simclr", "timm:vit_tiny_patch16_224", auto) == "timm:vit_tiny_patch16_224"
    assert real_backbone_name("mae", "cnn-small", auto) == "cnn-small"
