"""View generators: small callables that augment a whole batch at once with tensor ops.

They run on the training device (no per-image PIL work) and draw every random number from the
``torch.Generator`` they are given, so a seeded generator gives the same views every time.

    views = MultiView(ImageAugment(crop_scale=(0.3, 1.0), flip_p=0.5), n=2)
    v1, v2 = views(x, generator)          # x: float images in [0, 1], (B, C, H, W)

Image ops: random resized crop, flip, rotation (one fused affine ``grid_sample``, optionally to
another output size), colour jitter (brightness, contrast; saturation and hue on RGB), random
grayscale, Gaussian blur, solarisation, erosion / dilation (3x3 min /
max pooling), inversion, Gaussian noise and patch masking. Vector ops (for ``mog2d``): additive
Gaussian noise and random scaling. :class:`MultiCrop` gives the multi-crop view list of SwAV /
DINO / LeJEPA: global crops at full size plus local crops at a smaller size.

Views work on images in [0, 1]; the harness normalises them (dataset mean / std) afterwards, so
thresholds such as solarisation's 0.5 are in [0, 1] pixel space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TYPE_CHECKING, TypeVar, cast

import torch
import torch.nn.functional as F

from .kinds import DataKind

if TYPE_CHECKING:
    from .method import DataSpec, Method

Tensor = torch.Tensor
#: An augmentation: (batch, generator) -> augmented batch.
Transform = Callable[[Tensor, torch.Generator], Tensor]


def _u(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device | str | None) -> Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def _coin(n: int, p: float, g: torch.Generator, device: torch.device | str | None) -> Tensor:
    return torch.rand(n, generator=g, device=device) < p


def random_affine(
    x: Tensor,
    g: torch.Generator,
    crop_scale: Sequence[float] = (0.3, 1.0),
    crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    rotate_deg: float = 0.0,
    size: int = 0,
) -> Tensor:
    """Random resized crop + horizontal flip + rotation as one batched affine resampling; the
    output is ``size x size`` pixels (``size=0``: the input's size)."""
    b, dev = x.shape[0], x.device
    area = _u(b, crop_scale[0], crop_scale[1], g, dev)
    logr = _u(b, math.log(crop_ratio[0]), math.log(crop_ratio[1]), g, dev)
    ratio = logr.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)  # fraction of the width kept
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (_u(b, -1, 1, g, dev)) * (1 - w)  # centre in normalised [-1, 1] coordinates
    cy = (_u(b, -1, 1, g, dev)) * (1 - h)
    flip = torch.where(_coin(b, flip_p, g, dev), -1.0, 1.0)
    ang = _u(b, -rotate_deg, rotate_deg, g, dev) * (math.pi / 180)
    cos, sin = ang.cos(), ang.sin()
    theta = torch.stack(
        [
            torch.stack([w * flip * cos, -h * sin, cx], 1),
            torch.stack([w * flip * sin, h * cos, cy], 1),
        ],
        1,
    ).to(x.dtype)
    out = list(x.shape) if size <= 0 else [*x.shape[:2], int(size), int(size)]
    grid = F.affine_grid(theta, out, align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


#: ITU-R 601-2 luma weights of R, G, B (torchvision's ``rgb_to_grayscale``, PIL's ``convert("L")``)
LUMA = (0.299, 0.587, 0.114)


def _gray(x: Tensor) -> Tensor:
    """(B, 1, H, W) luma of RGB images (ITU-R 601-2 weights)."""
    r, gr, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * gr + LUMA[2] * b).unsqueeze(1)


def color_jitter(
    x: Tensor, g: torch.Generator, brightness: float, contrast: float, saturation: float, hue: float, p: float
) -> Tensor:
    """With probability p per image: brightness, contrast, then (RGB only) saturation and hue jitter.

    Factors are drawn per image: brightness and contrast ``U(1 - s, 1 + s)``, saturation
    ``U(max(0, 1 - s), 1 + s)`` (blend with the image's grey: 0 gives grey), hue a shift of
    ``U(-hue, hue)`` of the colour circle (``hue <= 0.5``). The order is fixed (torchvision's
    ``ColorJitter`` draws one per call). With ``saturation = hue = 0`` this draws exactly what
    :func:`brightness_contrast` draws, so the grey recipes' views do not change. Contrast pulls
    towards the image's mean taken before the brightness change, with no clamp in between
    (torchvision: the grey mean of the brightened, clamped image), so the image's mean moves by
    ``(1 + con * (bright - 1))`` instead of ``bright``.
    """
    b, dev = x.shape[0], x.device
    shape = (-1, 1, 1, 1)
    on = _coin(b, p, g, dev).view(shape)
    bright = _u(b, 1 - brightness, 1 + brightness, g, dev).view(shape)
    con = _u(b, 1 - contrast, 1 + contrast, g, dev).view(shape)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    y = ((x * bright - mean) * con + mean).clamp(0, 1)
    rgb = x.shape[1] == 3
    if saturation > 0 and rgb:
        y = saturate(y, _u(b, max(0.0, 1 - saturation), 1 + saturation, g, dev))
    if hue > 0 and rgb:
        y = hue_shift(y, _u(b, -hue, hue, g, dev))
    return torch.where(on, y, x)


def brightness_contrast(x: Tensor, g: torch.Generator, strength: float, p: float) -> Tensor:
    return color_jitter(x, g, strength, strength, 0.0, 0.0, p)


def saturate(x: Tensor, factor: Tensor) -> Tensor:
    """RGB images blended with their grey by ``factor[i]`` per image (0: grey, 1: unchanged, as
    torchvision's ``adjust_saturation``), clamped to [0, 1]."""
    grey = _gray(x)
    return (grey + factor.view(-1, 1, 1, 1).to(x.dtype) * (x - grey)).clamp(0, 1)


def hue_shift(x: Tensor, shift: Tensor) -> Tensor:
    """RGB images in [0, 1] with each image's hue moved by ``shift[i]`` turns (HSV, as torchvision)."""
    mx, argmx = x.max(1)
    mn = x.min(1).values
    delta = mx - mn
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    r, gr, b = x.unbind(1)
    h = torch.where(argmx == 0, ((gr - b) / safe) % 6, torch.where(argmx == 1, (b - r) / safe + 2, (r - gr) / safe + 4))
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h))
    h = (h + shift.view(-1, 1, 1).to(x.dtype)) % 1.0
    sat = torch.where(mx > 0, delta / torch.where(mx > 0, mx, torch.ones_like(mx)), torch.zeros_like(mx))
    # HSV -> RGB: channel n is v - v*s*clamp(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6, n = 5, 3, 1
    k = (torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1) + 6 * h.unsqueeze(1)) % 6
    return mx.unsqueeze(1) * (1 - sat.unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1))


def random_grayscale(x: Tensor, g: torch.Generator, p: float) -> Tensor:
    """With probability p per RGB image, its ITU-R 601-2 luma in all three channels (grey images
    are returned unchanged, the coin is drawn all the same)."""
    on = _coin(x.shape[0], p, g, x.device).view(-1, 1, 1, 1)
    if x.shape[1] != 3:
        return x
    return torch.where(on, _gray(x).expand_as(x), x)


def gaussian_blur(
    x: Tensor, g: torch.Generator, p: float, sigma: Sequence[float] = (0.1, 2.0), kernel_frac: float = 0.1
) -> Tensor:
    """With probability p per image, a Gaussian blur of standard deviation ``U(sigma)`` pixels
    (SimCLR: 0.1-2.0 with a kernel of 10 % of the side, 23 px at 224). The kernel is the odd size
    nearest ``kernel_frac`` of the side, at least 3; borders reflect."""
    b, side = x.shape[0], min(x.shape[-2:])
    on = _coin(b, p, g, x.device).view(-1, 1, 1, 1)
    sd = _u(b, float(sigma[0]), float(sigma[1]), g, x.device)
    k = min(max(3, int(round(kernel_frac * side)) // 2 * 2 + 1), (side - 1) // 2 * 2 + 1)
    if k < 3:  # images under 3 px: nothing to blur
        return x
    return torch.where(on, blur(x, sd, k), x)


def blur(x: Tensor, sigma: Tensor, k: int) -> Tensor:
    """Each image blurred by a separable ``k x k`` Gaussian of standard deviation ``sigma[i]``
    pixels (reflected borders, as torchvision's ``gaussian_blur``); ``k`` odd, < the side."""
    b, c, hh, ww = x.shape
    sd = sigma.to(x.device, x.dtype)
    t = torch.arange(k, device=x.device, dtype=x.dtype) - (k - 1) / 2
    w = torch.exp(-(t.view(1, -1) ** 2) / (2 * sd.view(-1, 1) ** 2))
    w = (w / w.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, k): one kernel per image, per channel
    y = F.pad(x.reshape(1, b * c, hh, ww), (k // 2, k // 2, k // 2, k // 2), mode="reflect")
    y = F.conv2d(y, w.view(b * c, 1, k, 1), groups=b * c)
    return F.conv2d(y, w.view(b * c, 1, 1, k), groups=b * c).view(b, c, hh, ww)


def solarize(x: Tensor, g: torch.Generator, p: float, threshold: float = 0.5) -> Tensor:
    """With probability p per image, every pixel above ``threshold`` becomes ``1 - x`` (BYOL's
    solarisation, on images in [0, 1]: before normalisation)."""
    on = _coin(x.shape[0], p, g, x.device).view(-1, *([1] * (x.dim() - 1)))
    return torch.where(on & (x > threshold), 1.0 - x, x)


def morphology(x: Tensor, g: torch.Generator, p: float) -> Tensor:
    """With probability p each image is eroded or dilated (half each) by a 3x3 window."""
    b, dev = x.shape[0], x.device
    on = _coin(b, p, g, dev).view(-1, 1, 1, 1)
    dilate = _coin(b, 0.5, g, dev).view(-1, 1, 1, 1)
    dil = F.max_pool2d(x, 3, stride=1, padding=1)
    ero = -F.max_pool2d(-x, 3, stride=1, padding=1)
    return torch.where(on, torch.where(dilate, dil, ero), x)


def invert(x: Tensor, g: torch.Generator, p: float) -> Tensor:
    on = _coin(x.shape[0], p, g, x.device).view(-1, 1, 1, 1)
    return torch.where(on, 1.0 - x, x)


def gaussian_noise(x: Tensor, g: torch.Generator, std: float, p: float = 1.0) -> Tensor:
    on = _coin(x.shape[0], p, g, x.device).view(-1, *([1] * (x.dim() - 1)))
    noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype) * std
    return torch.where(on, x + noise, x)


def patch_mask(x: Tensor, g: torch.Generator, ratio: float, patch: int = 4, p: float = 1.0) -> Tensor:
    """Zero a random ``ratio`` of the ``patch x patch`` cells of each image."""
    if ratio <= 0:
        return x
    b, _, hh, ww = x.shape
    gh, gw = math.ceil(hh / patch), math.ceil(ww / patch)
    keep = torch.rand(b, 1, gh, gw, generator=g, device=x.device) >= ratio
    keep = keep.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[:, :, :hh, :ww]
    on = _coin(b, p, g, x.device).view(-1, 1, 1, 1)
    return torch.where(on & ~keep, torch.zeros_like(x), x)


@dataclass
class ImageAugment:
    """One random view of a batch of float images in [0, 1]. Every op can be switched off."""

    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    rotate_deg: float = 0.0
    jitter: float = 0.4  # brightness and contrast strength
    jitter_p: float = 0.8  # one coin for the whole colour jitter
    saturation: float = 0.0  # RGB only, like hue and grayscale_p
    hue: float = 0.0
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    morph_p: float = 0.0
    invert_p: float = 0.0
    noise_std: float = 0.0
    noise_p: float = 0.5
    mask_ratio: float = 0.0
    mask_patch: int = 4
    size: int = 0  # output side in pixels; 0 = the input's

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        x = random_affine(x, g, tuple(self.crop_scale), tuple(self.crop_ratio), self.flip_p, self.rotate_deg, self.size)
        if (self.jitter > 0 or self.saturation > 0 or self.hue > 0) and self.jitter_p > 0:
            x = color_jitter(x, g, self.jitter, self.jitter, self.saturation, self.hue, self.jitter_p)
        if self.grayscale_p > 0:
            x = random_grayscale(x, g, self.grayscale_p)
        if self.blur_p > 0:
            x = gaussian_blur(x, g, self.blur_p, self.blur_sigma)
        if self.solarize_p > 0:
            x = solarize(x, g, self.solarize_p)
        if self.morph_p > 0:
            x = morphology(x, g, self.morph_p)
        if self.invert_p > 0:
            x = invert(x, g, self.invert_p)
        if self.noise_std > 0:
            x = gaussian_noise(x, g, self.noise_std, self.noise_p)
        if self.mask_ratio > 0:
            x = patch_mask(x, g, self.mask_ratio, self.mask_patch)
        return x


@dataclass
class VectorAugment:
    """One random view of low-dimensional points: x * s + noise, s ~ U(scale)."""

    noise_std: float = 0.3
    scale: tuple[float, float] = (1.0, 1.0)

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        b = x.shape[0]
        s = _u(b, self.scale[0], self.scale[1], g, x.device).view(-1, 1).to(x.dtype)
        return gaussian_noise(x * s, g, self.noise_std)


@dataclass
class MultiView:
    """``n`` independent views through the same (or one per view) augmentation."""

    transforms: Sequence[Transform] | Transform
    n: int = 2

    def __call__(self, x: Tensor, g: torch.Generator) -> list[Tensor]:
        t = self.transforms
        ts = list(t) if isinstance(t, (list, tuple)) else [cast(Transform, t)] * self.n
        return [t(x, g) for t in ts]


@dataclass
class MultiCrop:
    """Multi-crop (SwAV, Caron et al. 2020; DINO): ``[global_1, .., global_G, local_1, .., local_L]``.

    ``globals_`` are full-size augmentations (one transform per global view, so that e.g. only the
    second one solarises); ``local`` is applied ``n_local`` times (smaller size, smaller crop scale).
    Same-size views come first and together, so a method can run each size as one batch.
    """

    globals_: Sequence[Callable[[Tensor, torch.Generator], Tensor]]
    local: Callable[[Tensor, torch.Generator], Tensor] | None = None
    n_local: int = 0

    @property
    def n_global(self) -> int:
        return len(self.globals_)

    def __call__(self, x: Tensor, g: torch.Generator) -> list[Tensor]:
        out = [t(x, g) for t in self.globals_]
        if self.local is not None:
            out += [self.local(x, g) for _ in range(self.n_local)]
        return out


def multi_crop(
    kind: str,
    input_shape: Sequence[int],
    overrides: dict | None = None,
    n_global: int = 2,
    n_local: int = 6,
    local_size: int = 0,
    local_scale: tuple[float, float] = (0.05, 0.3),
    solarize_p: Sequence[float] = (),
    base: Any = None,
) -> MultiCrop:
    """The multi-crop recipe of a data kind.

    Global views: the kind's default augmentation with ``overrides`` (full size; crop scale from
    the overrides, default 0.3-1); ``solarize_p[i]`` sets global view i's solarisation
    probability. Local views (images): the same augmentation at ``local_size`` pixels (0 = half
    the input side, 28 -> 14) with crop scale ``local_scale`` and no solarisation. On vector data
    there is no size: the local views are further views of the same augmentation.
    """
    from .errors import ConfigError

    if n_global < 1 or n_local < 0:
        raise ConfigError(f"multi-crop needs n_global >= 1 and n_local >= 0, got {n_global} and {n_local}")
    lo, hi = (float(v) for v in local_scale)
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"multi-crop local crop scale must satisfy 0 < min <= max <= 1, got ({lo}, {hi})")
    aug = default_augment(kind, overrides, base)
    own = kind == DataKind.IMAGE and "solarize_p" not in (overrides or {})  # a config value applies to every view
    globals_ = [
        _with(aug, solarize_p=float(solarize_p[i])) if own and i < len(solarize_p) else aug for i in range(n_global)
    ]
    if n_local == 0:
        return MultiCrop(globals_)
    if kind != DataKind.IMAGE:
        return MultiCrop(globals_, aug, n_local)
    side = local_side(input_shape, local_size)
    return MultiCrop(globals_, _with(aug, size=side, crop_scale=(lo, hi), solarize_p=0.0), n_local)


def local_side(input_shape: Sequence[int], local_size: int = 0) -> int:
    """The local crops' side in pixels: ``local_size``, or half the image side when it is 0."""
    from .errors import ConfigError

    side = int(local_size) if local_size > 0 else max(1, int(input_shape[-1]) // 2)
    if side > int(input_shape[-1]):
        raise ConfigError(f"multi-crop local_size {side} is larger than the images ({input_shape[-1]} px)")
    return side


def method_multi_crop(
    method: Method,
    spec: DataSpec,
    overrides: dict | None = None,
    n_global: int = 2,
    solarize_p: Sequence[float] | None = None,
) -> Callable:
    """The multi-crop views of a method with the usual options (``n_local``, ``local_size``,
    ``local_scale_min``/``_max`` in ``method.hp``): refuses, in one line, a backbone that cannot
    take the small crops, then builds :func:`multi_crop` (SwAV, DINO, LeJEPA)."""
    from .heads import check_accepts_size

    h = method.hp
    if spec.kind == DataKind.IMAGE and h.n_local > 0:
        check_accepts_size(
            method.backbone, spec.input_shape, local_side(spec.input_shape, h.local_size), method.registry_name
        )
    extra = {} if solarize_p is None else {"solarize_p": tuple(solarize_p)}
    return multi_crop(
        spec.kind,
        spec.input_shape,
        overrides,
        n_global=n_global,
        n_local=h.n_local,
        local_size=h.local_size,
        local_scale=(h.local_scale_min, h.local_scale_max),
        base=spec.views,
        **extra,
    )


def asymmetric_views(
    kind: str, overrides: dict | None = None, solarize_p: Sequence[float] = (0.0, 0.2), base: Any = None
) -> MultiView:
    """Two views of the kind's default augmentation that differ only in their solarisation
    probability (BYOL's asymmetric recipe: 0 for view 1, 0.2 for view 2). A ``solarize_p`` in
    ``overrides`` (config ``views``) applies to both views instead."""
    aug = default_augment(kind, overrides, base)
    if kind != DataKind.IMAGE or "solarize_p" in (overrides or {}):
        return MultiView(aug, n=len(solarize_p))
    return MultiView([_with(aug, solarize_p=float(p)) for p in solarize_p], n=len(solarize_p))


AugmentT = TypeVar("AugmentT", bound=ImageAugment | VectorAugment)


def _with(aug: AugmentT, **changes: Any) -> AugmentT:
    from dataclasses import replace

    return replace(aug, **changes)


#: SimCLR's colour recipe (Chen et al. 2020, appendix A, for ImageNet and CIFAR-10; also MoCo v2's
#: --aug-plus, BYOL's, solo-learn's and lightly's CIFAR recipes): colour jitter 0.4 / 0.4 / 0.4 / 0.1
#: (brightness, contrast, saturation, hue) at p 0.8, random grayscale at p 0.2, crops of 8-100 %
PAPER_COLOR_VIEWS: dict[str, Any] = {
    "crop_scale": (0.08, 1.0),
    "jitter": 0.4,
    "saturation": 0.4,
    "hue": 0.1,
    "jitter_p": 0.8,
    "grayscale_p": 0.2,
}


#: the colour ops off (saturation, hue, grayscale, blur): for methods whose paper uses none
NO_COLOR_VIEWS: dict[str, Any] = {"saturation": 0.0, "hue": 0.0, "grayscale_p": 0.0, "blur_p": 0.0}


def default_augment(kind: str, overrides: dict | None = None, base: Any = None) -> ImageAugment | VectorAugment:
    """The view recipe of a data kind, resolved in one place (as timm resolves its data config):
    the kind's defaults, then the dataset's declared views (``base``: ``DataSpec.views``, a dict
    or its items), then ``overrides`` (the method's own settings with the config's ``views`` over
    them). Unknown keys are an error."""
    from .errors import ConfigError

    cls = ImageAugment if kind == DataKind.IMAGE else VectorAugment
    overrides = {**dict(base or {}), **dict(overrides or {})}
    known = set(asdict(cls()).keys())
    bad = sorted(set(overrides) - known)
    if bad:
        raise ConfigError(f"unknown view option(s) {bad} for {kind} data; known: {sorted(known)}")
    for k, v in list(overrides.items()):
        if isinstance(v, list):
            overrides[k] = tuple(v)
    return cls(**overrides)


def view_generator(seed: int, step: int, device: torch.device | str | None, stream: int = 0) -> torch.Generator:
    """A generator whose state depends only on (seed, step, stream): views are reproducible on
    resume. Stream 0 is the views'; stream 1 the method's own draws in ``training_step``
    (``Method.clock.generator()``)."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(step) * 7_919 + 12_345 + int(stream) * 104_729) % (2**63 - 1))
    return g


__all__ = [
    "ImageAugment",
    "VectorAugment",
    "MultiView",
    "MultiCrop",
    "multi_crop",
    "asymmetric_views",
    "default_augment",
    "PAPER_COLOR_VIEWS",
    "view_generator",
    "random_affine",
    "brightness_contrast",
    "color_jitter",
    "hue_shift",
    "random_grayscale",
    "gaussian_blur",
    "saturate",
    "blur",
    "solarize",
    "morphology",
    "invert",
    "gaussian_noise",
    "patch_mask",
]


# ---------------------------------------------------------------- masks for the method zoo
def coordinate_mask(x: Tensor, g: torch.Generator | None, ratio: float = 0.5) -> Tensor:
    """Zero ``max(1, round(ratio * D))`` random coordinates of each row of ``x (B, D)``, always
    keeping at least one (the masked JEPA of the JEA tutorial: on 2-D points, one coordinate)."""
    b, d = x.shape[0], x[0].numel()
    k = min(max(1, round(ratio * d)), d - 1) if d > 1 else 0
    if k == 0:
        return x
    order = torch.rand(b, d, generator=g, device=x.device).argsort(1)
    keep = order >= k
    return x * keep.view_as(x).to(x.dtype)


def random_token_split(
    batch: int,
    n_tokens: int,
    mask_ratio: float,
    g: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """MAE's random masking: per sample, ``(keep_idx, mask_idx)`` of shapes ``(B, n_keep)`` and
    ``(B, n_tokens - n_keep)``, ``n_keep = max(1, round(n_tokens * (1 - mask_ratio)))``."""
    n_keep = min(max(1, round(n_tokens * (1 - mask_ratio))), n_tokens - 1)
    order = torch.rand(batch, n_tokens, generator=g).argsort(1)
    return order[:, :n_keep].to(device), order[:, n_keep:].to(device)


def _block(
    gh: int, gw: int, scale: tuple[float, float], aspect: tuple[float, float], g: torch.Generator | None
) -> tuple[int, int]:
    s = float(torch.empty(1).uniform_(*scale, generator=g))
    la = math.log(aspect[0]), math.log(aspect[1])
    ar = math.exp(float(torch.empty(1).uniform_(*la, generator=g)))
    h = max(1, min(gh, round(math.sqrt(s * gh * gw * ar))))
    w = max(1, min(gw, round(math.sqrt(s * gh * gw / ar))))
    return h, w


def multiblock_masks(
    batch: int,
    grid: tuple[int, int],
    g: torch.Generator | None = None,
    num_targets: int = 4,
    target_scale: tuple[float, float] = (0.15, 0.2),
    target_aspect: tuple[float, float] = (0.75, 1.5),
    context_scale: tuple[float, float] = (0.85, 1.0),
    min_keep: int = 4,
    timeout: int = 20,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """I-JEPA's multi-block masking on a ``gh x gw`` patch grid, as the reference collator
    (facebookresearch/ijepa ``src/masks/multiblock.py``) draws it.

    One block size is drawn per batch for the targets and one for the context; positions are
    drawn per sample. The context block minus every target patch must keep at least
    ``min_keep`` patches (or the whole context block, when that is smaller): otherwise its
    position is drawn again, and after ``timeout`` failed draws one more target (the last first)
    stops constraining it, so on tiny grids the context may overlap a target, as in the
    reference. The contexts are then cut to the batch's smallest count, which is >= ``min_keep``
    (random subset). Returns ``(context_idx (B, Nc), target_idx (B, num_targets, Nt))``.

    Two differences from the reference, visible on small grids: a block may be as large as the
    grid and sit at any position (the reference shrinks every block below the grid, ``h <= H - 1``,
    and draws its corner in ``[0, H - h - 1]``), and the context cut keeps a random subset of each
    context where the reference keeps its first ``k`` patches in raster order.
    """
    from .errors import ConfigError

    gh, gw = grid
    if not 1 <= int(min_keep) <= gh * gw:
        raise ConfigError(
            f"multiblock masks: min_keep must be in [1, {gh * gw}] on a {gh}x{gw} patch grid, got {min_keep}"
        )
    th, tw = _block(gh, gw, target_scale, target_aspect, g)
    ch, cw = _block(gh, gw, context_scale, (1.0, 1.0), g)
    need = min(int(min_keep), ch * cw)
    # Drawn for the whole batch at once (a loop over the samples dominated an I-JEPA step on a GPU);
    # same distribution as the loop.
    rows, cols = torch.arange(gh).view(gh, 1), torch.arange(gw).view(1, gw)

    def rect(y: Tensor, x: Tensor, h: int, w: int) -> Tensor:  # (*y.shape, gh, gw): cover of blocks at (y, x)
        yy, xx = y[..., None, None], x[..., None, None]
        return (rows >= yy) & (rows < yy + h) & (cols >= xx) & (cols < xx + w)

    ty = torch.randint(0, gh - th + 1, (batch, num_targets), generator=g)
    tx = torch.randint(0, gw - tw + 1, (batch, num_targets), generator=g)
    covers = rect(ty, tx, th, tw)  # (B, T, gh, gw)
    offsets = (torch.arange(th).view(th, 1) * gw + torch.arange(tw).view(1, tw)).flatten()
    targets = (ty * gw + tx)[..., None] + offsets  # (B, T, th * tw), each block row-major
    # the context: rejection sampling per sample; after `timeout` failed draws of a sample, one
    # more of its targets (the last first) stops constraining it
    free = torch.zeros(batch, gh, gw, dtype=torch.bool)
    dropped = torch.zeros(batch, dtype=torch.long)
    fails = torch.zeros(batch, dtype=torch.long)
    pending = torch.arange(batch)
    t_ix = torch.arange(num_targets).view(1, num_targets, 1, 1)
    while len(pending):
        y = torch.randint(0, gh - ch + 1, (len(pending),), generator=g)
        x = torch.randint(0, gw - cw + 1, (len(pending),), generator=g)
        active = t_ix < (num_targets - dropped[pending]).view(-1, 1, 1, 1)
        blocked = (covers[pending] & active).any(1)
        f = rect(y, x, ch, cw) & ~blocked  # (P, gh, gw)
        ok = f.flatten(1).sum(1) >= need
        free[pending[ok]] = f[ok]
        bad = pending[~ok]
        fails[bad] += 1
        out = bad[fails[bad] == timeout]
        dropped[out] += 1
        fails[out] = 0
        pending = bad
    free = free.flatten(1)
    nc = int(free.sum(1).min())
    # a uniformly random subset of nc free patches per sample, in ascending order
    keys = torch.rand(batch, gh * gw, generator=g).masked_fill(~free, 2.0)
    ctx_idx = keys.argsort(1)[:, :nc].sort(1).values
    return ctx_idx.to(device), targets.to(device)


@dataclass
class MaskedPair:
    """``[masked, full]`` (masked JEPA): by default two views of one augmentation of the batch;
    ``independent=True`` masks one augmentation and keeps a second, independent one whole (the
    masked and target views of Masked Siamese Networks)."""

    augment: Callable[[Tensor, torch.Generator], Tensor]
    mask: Callable[[Tensor, torch.Generator], Tensor]
    independent: bool = False

    def __call__(self, x: Tensor, g: torch.Generator) -> list[Tensor]:
        full = self.augment(x, g)
        if self.independent:
            return [self.mask(full, g), self.augment(x, g)]
        return [self.mask(full, g), full]
