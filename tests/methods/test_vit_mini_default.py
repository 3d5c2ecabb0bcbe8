"""ijepa and mae train ``vit-mini`` by default: the module they trained as ``timm:vit_tiny_patch16_224``
with its size options until the backbone had a name. Only the name changed (and with it the run id and
the recipe digest, which include it): one training step gives the same weights, bit for bit."""

import pytest
import torch

from ssl_bench.build import backbone_choice
from ssl_bench.checkpoint import load_resume, read_encoder
from ssl_bench.config import RunConfig
from ssl_bench.registry import METHODS
from ssl_bench.trainer import train

#: what ijepa and mae named as their default backbone before vit-mini (methods/ijepa.py VIT_SMALL_CPU)
LEGACY_VIT = ("timm:vit_tiny_patch16_224", {"img_size": "auto", "patch_size": "auto", "embed_dim": 96, "depth": 4,
                                            "num_heads": 3, "class_token": False, "global_pool": "avg",
                                            "dynamic_img_size": True})


def _cfg(method, **kw):
    return RunConfig(method=method, dataset="digits", preset="smoke", epochs=1, batch_size=32, train_subset=32,
                     eval_train_subset=64, eval_test_subset=32, progress=False, device="cpu", precision="fp32",
                     knn_monitor_every=0, warmup_frac=0.0, **kw)  # no warm-up: the one step moves the weights


@pytest.mark.parametrize("method", ["ijepa", "mae"])
def test_the_default_backbone_is_vit_mini(method):
    assert METHODS.get(method).default_backbone == {"image": ("vit-mini", {})}
    assert backbone_choice(_cfg(method), "image") == ("vit-mini", {})
    patch4 = _cfg(method, backbone_kwargs={"patch_size": 4})  # --set 'backbone_kwargs={"patch_size": 4}'
    assert backbone_choice(patch4, "image") == ("vit-mini", {"patch_size": 4})


@pytest.mark.parametrize("method", ["ijepa", "mae"])
def test_one_step_on_vit_mini_equals_one_on_the_legacy_vit(method, tmp_path):
    new = train(_cfg(method), tmp_path / "new")
    old = train(_cfg(method, backbone=LEGACY_VIT[0], backbone_kwargs=LEGACY_VIT[1]), tmp_path / "old")
    assert "-vit-mini-" in new.run_dir.name and "-timm-vit_tiny_patch16_224-" in old.run_dir.name
    (a, meta_a), (b, meta_b) = read_encoder(new.checkpoint), read_encoder(old.checkpoint)
    assert meta_a["step"] == meta_b["step"] == 1
    assert meta_a["backbone"] == "vit-mini" and meta_b["backbone"] == LEGACY_VIT[0]
    assert meta_a["recipe"] == meta_b["recipe"]  # the method's options: the same recipe but for the name
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    # the whole training state, heads and optimiser included, and the logged loss
    ra, rb = (load_resume(r.run_dir / "checkpoints" / "resume.pt") for r in (new, old))
    for part in ("method", "optimizer"):
        sa, sb = ra[part], rb[part]
        flat_a, flat_b = _tensors(sa), _tensors(sb)
        assert flat_a.keys() == flat_b.keys() and all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a), part
    log_a, log_b = (_log(r.run_dir) for r in (new, old))
    assert float(log_a["loss"]) > 0
    assert {k: log_a[k] for k in ("step", "lr", "loss")} == {k: log_b[k] for k in ("step", "lr", "loss")}
    torch.manual_seed(0)  # and the step did train: the weights are not the initial ones
    from ssl_bench.build import build_method, data_spec, load_data

    init = build_method(_cfg(method), data_spec(load_data(_cfg(method)))).evaluated_backbone().state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a if k in init)


def _log(run_dir):
    import csv

    with open(run_dir / "train_log.csv") as f:
        return list(csv.DictReader(f))[-1]


def _tensors(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        return {k2: v for k, x in obj.items() for k2, v in _tensors(x, f"{prefix}/{k}").items()}
    if isinstance(obj, (list, tuple)):
        return {k2: v for i, x in enumerate(obj) for k2, v in _tensors(x, f"{prefix}/{i}").items()}
    return {}
