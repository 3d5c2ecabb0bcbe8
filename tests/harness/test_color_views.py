"""The colour view ops (saturation and hue jitter, random grayscale, Gaussian blur) on generated
RGB images: each op's effect, agreement with torchvision's functional ops where both exist, and
determinism under a seed. The grey recipes draw exactly what they drew before these ops existed."""

import pytest
import torch
import torchvision.transforms.functional as TF

from ssl_bench.views import (
    ImageAugment,
    LUMA,
    blur,
    brightness_contrast,
    color_jitter,
    gaussian_blur,
    hue_shift,
    random_grayscale,
    saturate,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rgb(n: int = 8, side: int = 16, seed: int = 0, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Smooth colour blobs plus pixel noise, in [lo, hi]."""
    g = _gen(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    x = (0.8 * x + 0.2 * torch.rand(n, 3, side, side, generator=g)).clamp(0, 1)
    return lo + (hi - lo) * x


def _pure(*rgb: float, side: int = 4) -> torch.Tensor:
    return torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, side, side).clone()


def test_grayscale_gives_equal_channels_with_the_itu_weights_per_image_probability():
    x = _rgb()
    y = random_grayscale(x, _gen(), p=1.0)
    luma = LUMA[0] * x[:, 0] + LUMA[1] * x[:, 1] + LUMA[2] * x[:, 2]
    for c in range(3):
        torch.testing.assert_close(y[:, c], luma)
    assert LUMA == (0.299, 0.587, 0.114)
    # torchvision's tensor path truncates the red weight to 0.2989: 1e-4 at most
    torch.testing.assert_close(y, TF.rgb_to_grayscale(x, num_output_channels=3), rtol=0, atol=2e-4)
    assert torch.equal(random_grayscale(x, _gen(), p=0.0), x)
    many = random_grayscale(_rgb(n=400, side=4), _gen(1), p=0.2)
    grey = (many.amax(1) - many.amin(1)).flatten(1).amax(1) < 1e-6
    assert 0.13 < grey.float().mean() < 0.27  # 80 expected of 400
    one_channel = torch.rand(4, 1, 8, 8, generator=_gen())
    assert torch.equal(random_grayscale(one_channel, _gen(), p=1.0), one_channel)


def test_saturation_zero_gives_grey_one_keeps_two_spreads_and_luma_is_kept():
    x = _rgb(lo=0.4, hi=0.6)  # no clamping at factors up to 2
    n = len(x)
    grey = saturate(x, torch.zeros(n))
    assert float((grey.amax(1) - grey.amin(1)).max()) < 1e-6
    torch.testing.assert_close(saturate(x, torch.ones(n)), x)
    spread = lambda t: float((t.amax(1) - t.amin(1)).mean())  # noqa: E731
    assert spread(saturate(x, torch.full((n,), 2.0))) == pytest.approx(2 * spread(x), rel=1e-4)
    for f in (0.0, 0.5, 1.7):
        want = TF.adjust_saturation(x, f)  # (torchvision's grey: red weight 0.2989)
        torch.testing.assert_close(saturate(x, torch.full((n,), f)), want, rtol=0, atol=2e-4)
    # the jitter with only saturation on: every image's luma is kept, its colour spread changes
    y = color_jitter(x, _gen(), 0.0, 0.0, 0.8, 0.0, p=1.0)
    lum = lambda t: sum(w * t[:, i] for i, w in enumerate(LUMA))  # noqa: E731
    torch.testing.assert_close(lum(y), lum(x), rtol=0, atol=1e-5)
    ratio = (y.amax(1) - y.amin(1)).flatten(1).mean(1) / (x.amax(1) - x.amin(1)).flatten(1).mean(1)
    assert float(ratio.min()) >= 0.2 - 1e-4 and float(ratio.max()) <= 1.8 + 1e-4 and float(ratio.std()) > 0.1


def test_hue_shift_moves_a_pure_colour_around_the_circle_and_matches_torchvision():
    red = _pure(1.0, 0.0, 0.0)
    torch.testing.assert_close(hue_shift(red, torch.tensor([1 / 3])), _pure(0.0, 1.0, 0.0))
    torch.testing.assert_close(hue_shift(red, torch.tensor([2 / 3])), _pure(0.0, 0.0, 1.0))
    torch.testing.assert_close(hue_shift(red, torch.tensor([0.1])), _pure(1.0, 0.6, 0.0))
    x = _rgb()
    torch.testing.assert_close(hue_shift(x, torch.zeros(len(x))), x, rtol=0, atol=1e-5)
    for h in (-0.4, 0.1, 0.25):
        torch.testing.assert_close(hue_shift(x, torch.full((len(x),), h)), TF.adjust_hue(x, h), rtol=0, atol=1e-5)
    y = hue_shift(x, torch.linspace(-0.5, 0.5, len(x)))  # value and saturation stay
    torch.testing.assert_close(y.amax(1), x.amax(1), rtol=0, atol=1e-5)
    torch.testing.assert_close(y.amin(1), x.amin(1), rtol=0, atol=1e-5)
    # the jitter's hue: a pure red moves by at most `hue` turns, per image, both ways
    reds = _pure(1.0, 0.0, 0.0).expand(64, 3, 4, 4)
    j = color_jitter(reds, _gen(), 0.0, 0.0, 0.0, 0.1, p=1.0)
    px = j[:, :, 0, 0]  # red moved by d turns (|d| <= 1/6) is (1, 6d, 0) or (1, 0, -6d): its HSV hue
    assert torch.equal(px[:, 0], torch.ones(64)) and bool(((px[:, 1] == 0) | (px[:, 2] == 0)).all())
    d = (px[:, 1] - px[:, 2]) / 6
    assert float(d.abs().max()) <= 0.1 + 1e-5 and float(d.min()) < -0.05 and float(d.max()) > 0.05


def test_gaussian_blur_lowers_high_frequency_energy_and_matches_torchvision():
    x = _rgb(side=16)
    hf = lambda t: float((t[..., 1:, :] - t[..., :-1, :]).pow(2).mean() + (t[..., 1:] - t[..., :-1]).pow(2).mean())  # noqa: E731
    y = gaussian_blur(x, _gen(), p=1.0, sigma=(1.0, 2.0), kernel_frac=0.3)
    assert hf(y) < 0.5 * hf(x)
    torch.testing.assert_close(y.mean((1, 2, 3)), x.mean((1, 2, 3)), rtol=0, atol=0.02)  # a low-pass keeps the mean
    for s in (0.5, 1.3):
        torch.testing.assert_close(blur(x, torch.full((len(x),), s), 5), TF.gaussian_blur(x, [5, 5], [s, s]))
    stronger = blur(x, torch.tensor([0.3, 2.0] * 4), 5)
    assert hf(stronger[1::2]) < hf(stronger[::2])  # the per-image sigma is used
    assert torch.equal(gaussian_blur(x, _gen(), p=0.0), x)
    assert torch.equal(gaussian_blur(x[..., :2, :2], _gen(), p=1.0), x[..., :2, :2])  # no kernel fits


def test_colour_recipe_is_deterministic_under_a_seed_and_random_per_sample():
    aug = ImageAugment(jitter=0.4, saturation=0.4, hue=0.1, jitter_p=0.8, grayscale_p=0.2, blur_p=0.5)
    same = _rgb(n=1).expand(32, 3, 16, 16)
    a, b, c = aug(same, _gen(3)), aug(same, _gen(3)), aug(same, _gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == same.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert len({tuple(v.flatten()[:8].tolist()) for v in a}) > 24  # one image, different views per sample


def test_grey_recipes_draw_what_they_drew_before_the_colour_ops():
    """``brightness_contrast`` as it was; the default recipe on grey images still uses exactly it."""

    def before(x, g, strength, p):
        b = x.shape[0]
        on = (torch.rand(b, generator=g) < p).view(-1, 1, 1, 1)
        lo, hi = 1 - strength, 1 + strength
        bright = (torch.rand(b, generator=g) * (hi - lo) + lo).view(-1, 1, 1, 1)
        contrast = (torch.rand(b, generator=g) * (hi - lo) + lo).view(-1, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return torch.where(on, ((x * bright - mean) * contrast + mean).clamp(0, 1), x)

    x = torch.rand(16, 1, 28, 28, generator=_gen())
    assert torch.equal(brightness_contrast(x, _gen(5), 0.4, 0.8), before(x, _gen(5), 0.4, 0.8))
    rgb = _rgb()  # saturation and hue off: the colour jitter is the old one on RGB too
    assert torch.equal(color_jitter(rgb, _gen(5), 0.4, 0.4, 0.0, 0.0, 0.8), before(rgb, _gen(5), 0.4, 0.8))
    d = ImageAugment()
    assert (d.saturation, d.hue, d.grayscale_p, d.blur_p) == (0.0, 0.0, 0.0, 0.0)
