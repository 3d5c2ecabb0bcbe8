"""Each dataset declares its view recipe (``Data.views``); the method's and the config's views merge
over it (``ssl_bench.views.default_augment``). CIFAR-10 and STL-10 get the papers' colour recipes;
Fashion-MNIST and digits resolve exactly the recipes they resolved before datasets declared any."""
from dataclasses import asdict

import pytest
import torch

from conftest import needs_fmnist, tiny_config
from stl10_files import write_stl10
from test_datasets import _cifar_fixture

from ssl_bench.build import build_method, data_spec, load_data, train_split
from ssl_bench.method import DataSpec
from ssl_bench.registry import METHODS
from ssl_bench.views import ImageAugment, MaskedPair, MultiCrop, MultiView, view_generator

#: ImageAugment's defaults as they were before the colour ops (the grey 28-px recipe of the boards)
GREY_DEFAULTS = dict(crop_scale=(0.3, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_p=0.5, rotate_deg=0.0, jitter=0.4,
                     jitter_p=0.8, solarize_p=0.0, morph_p=0.0, invert_p=0.0, noise_std=0.0, noise_p=0.5,
                     mask_ratio=0.0, mask_patch=4, size=0)


def _augments(views) -> list[ImageAugment]:
    if isinstance(views, MultiCrop):
        return [*views.globals_, *([views.local] if views.local is not None else [])]
    if isinstance(views, MaskedPair):
        return [views.augment]
    assert isinstance(views, MultiView)
    t = views.transforms
    return list(t) if isinstance(t, (list, tuple)) else [t]


def _resolved(method: str, dataset: str, views: dict | None = None, **kw):
    cfg = tiny_config(method=method, dataset=dataset, views=views or {}, **kw).with_preset()
    data = train_split(cfg, load_data(cfg))
    spec = data_spec(data)
    m = build_method(cfg, spec)
    return m.make_views(spec, cfg.views), data, spec, m


def test_cifar10_resolves_the_papers_colour_recipe_and_methods_and_config_override_it(tmp_path):
    _cifar_fixture(tmp_path, n=8)
    views, data, spec, _ = _resolved("simclr", "cifar10", data_root=str(tmp_path), batch_size=8, train_subset=32)
    (aug,) = _augments(views)
    assert (aug.jitter, aug.saturation, aug.hue, aug.jitter_p) == (0.4, 0.4, 0.1, 0.8)
    assert (aug.grayscale_p, aug.crop_scale, aug.blur_p) == (0.2, (0.08, 1.0), 0.0)  # SimCLR: no blur at 32 px
    x = data.to_float(data.pretrain[:8])
    v1, v2 = views(x, view_generator(0, 0, "cpu"))
    assert v1.shape == x.shape and not torch.equal(v1, v2)
    assert all(torch.equal(a, b) for a, b in zip(views(x, view_generator(0, 0, "cpu")), (v1, v2), strict=True))
    # the config's views win over the dataset's; the method's own settings win over the dataset's
    views, *_ = _resolved("simclr", "cifar10", {"grayscale_p": 0.0}, data_root=str(tmp_path), batch_size=8,
                          train_subset=32)
    assert [(a.grayscale_p, a.saturation) for a in _augments(views)] == [(0.0, 0.4)]
    views, *_ = _resolved("mae", "cifar10", data_root=str(tmp_path), batch_size=8, train_subset=32)
    (mae,) = _augments(views)
    assert (mae.crop_scale, mae.jitter, mae.saturation, mae.hue, mae.grayscale_p) == ((0.2, 1.0), 0.0, 0.0, 0.0, 0.0)
    views, *_ = _resolved("byol", "cifar10", data_root=str(tmp_path), batch_size=8, train_subset=32)
    assert [(a.solarize_p, a.grayscale_p, a.hue) for a in _augments(views)] == [(0.0, 0.2, 0.1), (0.2, 0.2, 0.1)]


def test_stl10_resolves_colour_grayscale_and_blur(tmp_path):
    write_stl10(tmp_path)
    views, data, *_ = _resolved("vicreg", "stl10", data_root=str(tmp_path), batch_size=4, train_subset=4)
    for a in _augments(views):
        assert (a.saturation, a.hue, a.grayscale_p, a.blur_p, a.blur_sigma) == (0.4, 0.1, 0.2, 0.5, (0.1, 2.0))
    x = data.to_float(data.pretrain[:4])
    assert views(x, view_generator(0, 0, "cpu"))[0].shape == (4, 3, 96, 96)


@pytest.mark.parametrize("dataset", ["digits", pytest.param("fashion-mnist", marks=needs_fmnist)])
def test_grey_datasets_resolve_the_recipe_they_resolved_before(dataset):
    """The committed boards stay valid: every image method's resolved views on Fashion-MNIST and
    digits are those of a data spec that declares nothing, i.e. the recipes before this change."""
    assert set(GREY_DEFAULTS) | {"saturation", "hue", "grayscale_p", "blur_p", "blur_sigma"} == set(
        asdict(ImageAugment()))
    assert {k: v for k, v in asdict(ImageAugment()).items() if k in GREY_DEFAULTS} == GREY_DEFAULTS
    cfg = tiny_config(dataset=dataset).with_preset()
    data = train_split(cfg, load_data(cfg))
    assert data.views == {}
    for m in sorted(METHODS.names()):
        _, _, spec, method = _resolved(m, dataset, train_subset=64, batch_size=32)
        bare = DataSpec(spec.kind, spec.input_shape, spec.num_train)
        got, was = _augments(method.make_views(spec)), _augments(method.make_views(bare))
        assert got == was, m
        for a in got:
            assert (a.saturation, a.hue, a.grayscale_p, a.blur_p) == (0.0, 0.0, 0.0, 0.0), m
