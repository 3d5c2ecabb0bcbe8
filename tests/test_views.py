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
