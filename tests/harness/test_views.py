"""Views: batched, seeded, and each op does what it says."""
import torch

from ssl_bench.views import (ImageAugment, MultiView, VectorAugment, gaussian_noise, invert, morphology,
                             patch_mask, random_affine, view_generator)


def _imgs(b=16, c=1, s=28):
    return torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(0))


def test_same_seed_same_views_and_different_seed_different():
    x = _imgs()
    aug = MultiView(ImageAugment(morph_p=0.3, invert_p=0.2, noise_std=0.1, mask_ratio=0.2), n=2)
    a = aug(x, view_generator(0, 5, "cpu"))
    b = aug(x, view_generator(0, 5, "cpu"))
    c = aug(x, view_generator(0, 6, "cpu"))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])  # two views of one batch differ
    assert a[0].shape == x.shape


def test_identity_affine_and_flip():
    x = _imgs()
    g = torch.Generator().manual_seed(0)
    same = random_affine(x, g, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    flipped = random_affine(x, g, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=1.0)
    torch.testing.assert_close(flipped, x.flip(-1), atol=1e-5, rtol=0)


def test_crop_zooms_in():
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 13:15, 13:15] = 1.0  # a small bright square in the centre
    g = torch.Generator().manual_seed(0)
    y = random_affine(x, g, crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), flip_p=0.0)
    assert (y > 0.5).sum() > (x > 0.5).sum()  # zooming a quarter of the area magnifies it


def test_morphology_invert_noise_mask():
    x = _imgs(8)
    g = torch.Generator().manual_seed(1)
    m = morphology(x, g, p=1.0)
    dil = torch.nn.functional.max_pool2d(x, 3, 1, 1)
    ero = -torch.nn.functional.max_pool2d(-x, 3, 1, 1)
    for i in range(len(x)):
        assert torch.equal(m[i], dil[i]) or torch.equal(m[i], ero[i])
    assert torch.equal(invert(x, g, p=1.0), 1 - x)
    assert torch.equal(invert(x, g, p=0.0), x)
    n = gaussian_noise(x, g, std=0.5, p=1.0)
    assert 0.45 < (n - x).std() < 0.55
    mk = patch_mask(torch.ones(64, 1, 28, 28), g, ratio=0.5, patch=4)
    assert 0.4 < (mk == 0).float().mean() < 0.6


def test_vector_views():
    x = torch.zeros(1000, 2)
    v = VectorAugment(noise_std=0.3)(x, torch.Generator().manual_seed(0))
    assert 0.27 < v.std() < 0.33


def test_views_run_on_float_batches_without_python_loops():
    # one call handles the whole batch: 1024 images -> 1024 views, all in [0, 1] with no noise
    x = _imgs(1024)
    v = ImageAugment()(x, torch.Generator().manual_seed(0))
    assert v.shape == x.shape and v.min() >= 0 and v.max() <= 1


# ------------------------------------------------------------- solarisation, sizes, multi-crop
def test_solarize_flips_bright_pixels_only_and_per_image_probability():
    from ssl_bench.views import solarize

    x = _imgs(8)
    g = torch.Generator().manual_seed(0)
    y = solarize(x, g, p=1.0)
    assert torch.equal(y, torch.where(x > 0.5, 1 - x, x))
    assert torch.equal(solarize(x, g, p=0.0), x)
    # per image: an image is either untouched or solarised everywhere, about p of them
    xs = torch.full((4000, 1, 4, 4), 0.9)
    out = solarize(xs, g, p=0.2)
    flipped = (out < 0.5).flatten(1)
    assert torch.equal(flipped.all(1), flipped.any(1))
    assert 0.17 < flipped.all(1).float().mean() < 0.23


def test_resized_output_size_is_a_crop_resampled_to_that_size():
    x = _imgs(4)
    g = torch.Generator().manual_seed(0)
    # the full image at half size is the 2x2 average (exact at scale 1/2, bilinear, align_corners False)
    half = random_affine(x, g, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, size=14)
    torch.testing.assert_close(half, torch.nn.functional.avg_pool2d(x, 2), atol=1e-5, rtol=0)
    assert ImageAugment(size=14)(x, g).shape == (4, 1, 14, 14)


def test_multi_crop_shapes_recipe_and_seeding():
    from ssl_bench.views import multi_crop

    mc = multi_crop("image", (1, 28, 28), n_local=6, solarize_p=(0.0, 0.2))
    x = _imgs(8)
    vs = mc(x, view_generator(0, 3, "cpu"))
    assert [tuple(v.shape[-2:]) for v in vs] == [(28, 28)] * 2 + [(14, 14)] * 6
    assert all(torch.equal(a, b) for a, b in zip(vs, mc(x, view_generator(0, 3, "cpu"))))
    assert not torch.equal(vs[2], vs[3])  # each local crop is its own draw
    g1, g2 = mc.globals_
    assert (g1.solarize_p, g2.solarize_p, mc.local.solarize_p) == (0.0, 0.2, 0.0)
    assert tuple(g1.crop_scale) == (0.3, 1.0) and tuple(mc.local.crop_scale) == (0.05, 0.3)
    assert mc.local.size == 14 and g1.size == 0
    assert len(multi_crop("image", (1, 28, 28), n_local=0)(x, view_generator(0, 3, "cpu"))) == 2
    vec = multi_crop("vector", (2,), n_local=3)(torch.zeros(5, 2), view_generator(0, 0, "cpu"))
    assert [tuple(v.shape) for v in vec] == [(5, 2)] * 5


def test_multi_crop_rejects_bad_options():
    import pytest

    from ssl_bench.errors import ConfigError
    from ssl_bench.views import multi_crop

    for kw in (dict(n_local=-1), dict(local_scale=(0.3, 0.05)), dict(local_scale=(0.0, 0.3)), dict(local_size=40)):
        with pytest.raises(ConfigError):
            multi_crop("image", (1, 28, 28), **kw)


def test_asymmetric_views_solarise_only_the_second_view():
    from ssl_bench.views import asymmetric_views

    x = torch.full((2000, 1, 8, 8), 0.9)  # without jitter a view stays ~0.9: solarised <=> mean < 0.5
    v1, v2 = asymmetric_views("image", {"jitter": 0.0})(x, view_generator(0, 0, "cpu"))
    assert (v1.mean((1, 2, 3)) < 0.5).float().mean() == 0
    assert 0.16 < (v2.mean((1, 2, 3)) < 0.5).float().mean() < 0.24
    # an explicit views.solarize_p applies to both views
    both = asymmetric_views("image", {"solarize_p": 1.0, "jitter": 0.0})(x, view_generator(0, 0, "cpu"))
    assert all((v.mean((1, 2, 3)) < 0.5).all() for v in both)


def test_masked_pair_masks_one_augmentation_and_keeps_the_same_or_an_independent_one_whole():
    from functools import partial

    from ssl_bench.views import MaskedPair, default_augment, patch_mask

    x = torch.rand(16, 1, 28, 28) + 0.1  # no exact zeros before masking
    mask = partial(patch_mask, ratio=0.25, patch=7)
    same = MaskedPair(default_augment("image"), mask)
    masked, full = same(x, torch.Generator().manual_seed(0))
    kept = masked != 0
    assert 0 < kept.float().mean() < 1  # some cells masked, not all
    assert torch.equal(masked[kept], full[kept])  # the same augmentation outside the masked cells
    other = MaskedPair(default_augment("image"), mask, independent=True)
    masked2, full2 = other(x, torch.Generator().manual_seed(0))
    assert torch.equal(masked2, masked)  # the masked view is drawn first, from the same generator state
    assert (masked2[masked2 != 0] - full2[masked2 != 0]).abs().mean() > 0.05  # a different augmentation
