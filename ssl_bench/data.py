"""The data framework: :class:`Data` (what every dataset loader returns), :func:`load_dataset`,
the validation split, data roots, checksums and the helpers several loaders share. The built-in
loaders are plugins, one file per dataset in ``datasets/`` (installed as ``ssl_bench.datasets``),
registered by name with ``@register_dataset``. Small datasets are held in memory as uint8 tensors;
large ones (``imagefolder``, ``imagenet``, STL-10's unlabelled split) stay on disk as an
:class:`~ssl_bench.streaming.ImageSource` that DataLoader workers decode (:mod:`ssl_bench.streaming`).

Every loader returns a :class:`Data`: train/test images, labels and the facts the views and
the backbones need (kind, shape, channel statistics). Nothing here downloads: a dataset that is
not on disk raises :class:`DatasetNotFoundError` with the command that gets it.

Data roots: ``root=`` argument, else ``$SSL_BENCH_DATA``, else the system location. A root that
is given is strict (:func:`data_root`): every file comes from there, or there is an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

from .errors import ConfigError, DatasetNotFoundError
from .kinds import DataKind
from .registry import DATASETS
from .sampling import is_subsampled, subsample_indices
from .streaming import FileImages, ImageSource, is_streamed, list_image_folder

#: What a split holds: a tensor in memory, or images on disk decoded by workers.
Images = torch.Tensor | ImageSource


@dataclass
class Data:
    name: str
    x_train: Images  # uint8 (N,C,H,W) for images; float32 (N,D) for vectors; or an ImageSource
    y_train: torch.Tensor  # int64 (N,)
    x_test: Images
    y_test: torch.Tensor
    num_classes: int
    kind: DataKind
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    info: dict = field(default_factory=dict)
    #: The images self-supervised training sees when they are not the labelled training split
    #: (STL-10's unlabelled 100k); ``None``: training uses ``x_train``.
    x_pretrain: Images | None = None
    #: The dataset's default view recipe (:class:`ssl_bench.views.ImageAugment` fields); a method's
    #: and the config's ``views`` are merged over it (:func:`ssl_bench.views.default_augment`)
    views: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def pretrain(self) -> Images:
        """The images the trainer trains on (``x_pretrain``, else ``x_train``)."""
        return self.x_train if self.x_pretrain is None else self.x_pretrain

    @property
    def streamed(self) -> bool:
        """True when the training images are decoded from disk by workers (:mod:`ssl_bench.streaming`)."""
        return is_streamed(self.pretrain)

    @property
    def in_channels(self) -> int:
        return self.input_shape[0] if self.kind == DataKind.IMAGE else 1

    def subset(
        self, n_train: int | None = None, n_test: int | None = None, seed: int = 0, pretrain: bool = False
    ) -> Data:
        """A seeded random subset (the same for every method, so rows stay comparable); the test
        subset is drawn after the training one, from the same generator. ``pretrain=True`` draws
        ``n_train`` from the pretraining images where the data has its own (``x_pretrain``)."""
        g = torch.Generator().manual_seed(seed)

        def take(x: Images, y: torch.Tensor, n: int | None) -> tuple[Images, torch.Tensor]:
            if not is_subsampled(len(x), n):
                return x, y
            idx = subsample_indices(len(x), n, g)
            return (x.take(idx) if isinstance(x, ImageSource) else x[idx]), y[idx]

        if pretrain and self.x_pretrain is not None:  # the labelled training split is kept
            xp, _ = take(self.x_pretrain, torch.zeros(len(self.x_pretrain)), n_train)
            xte, yte = take(self.x_test, self.y_test, n_test)
            return replace(self, x_pretrain=xp, x_test=xte, y_test=yte)
        xtr, ytr = take(self.x_train, self.y_train, n_train)
        xte, yte = take(self.x_test, self.y_test, n_test)
        return replace(self, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float in [0, 1]; vectors unchanged (float32)."""
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        return x.float()

    def normalizer(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The channel standardisation ``x -> (x - mean) / std`` (images with statistics; else the
        identity), with the statistics put on ``device`` once: the trainer applies it every step."""
        if self.kind != DataKind.IMAGE or not self.mean:
            return lambda x: x
        mean = torch.tensor(self.mean, device=device, dtype=dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device, dtype=dtype).view(1, -1, 1, 1)
        return lambda x: (x - mean) / std

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Channel standardisation applied after the views, before the encoder (:meth:`normalizer`)."""
        return self.normalizer(x.device, x.dtype)(x)


def in_memory(x: Images, what: str = "this step") -> torch.Tensor:
    """``x`` as the tensor it is; images streamed from disk are a ConfigError naming ``what``
    (code that needs every image in memory says so instead of failing on an attribute)."""
    if isinstance(x, ImageSource):
        raise ConfigError(
            f"{what} needs the images in memory; this dataset streams them from disk (ssl_bench.streaming)"
        )
    return x


#: The validation split of ``scripts/tune_val.py`` and ``ssl-bench study rankme-selection``.
VAL_SIZE, VAL_SEED = 10_000, 2024


def validation_split(full: Data, size: int = VAL_SIZE, seed: int = VAL_SEED) -> Data:
    """Tuning data carved from the TRAINING set, never the test set: a seeded ``size`` of the
    training examples become the queries (``x_test``, ``y_test``) and the others the training pool
    (``x_train``, ``y_train``) that a model trains on and that k-NN uses as its memory bank. The
    name gains ``-val``. The draw is :func:`ssl_bench.sampling.subsample_indices` with ``seed``
    (the split recipes were tuned on, see docs/tuning.md)."""
    n = len(full.x_train)
    if not 1 <= size < n:
        raise ConfigError(
            f"validation split: size must be in [1, {n - 1}] for {full.name}'s {n} training examples, got {size}"
        )
    val = subsample_indices(n, size, seed)
    keep = torch.ones(n, dtype=torch.bool)
    keep[val] = False
    pool = keep.nonzero().flatten()
    return replace(
        full,
        name=f"{full.name}-val",
        x_train=full.x_train[pool],
        y_train=full.y_train[pool],
        x_test=full.x_train[val],
        y_test=full.y_train[val],
    )


def load_dataset(name: str, root: str | os.PathLike | None = None, **kwargs: Any) -> Data:
    import inspect

    loader = DATASETS.get(name)
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(loader).parameters
    except (TypeError, ValueError):
        params = {}
    known = [p for p, v in params.items() if p != "root" and v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)]
    unknown = sorted(set(kwargs) - set(known))
    if params and unknown:
        raise ConfigError(f"dataset {name!r} has no option(s) {unknown}; known: {', '.join(known) or '(none)'}")
    return loader(root=root, **kwargs)


def image_size(name: str, kwargs: dict | None = None) -> tuple[int, int] | None:
    """(H, W) of the images the dataset ``name`` loads with options ``kwargs``, without loading
    them: its ``image_size`` option when the loader has one (the given value, else the option's
    default), else the size the loader declares (``@register_dataset(name, image_size=...)``);
    None when neither says (vector data, a plugin that declares nothing, an unknown name)."""
    import inspect

    try:
        loader = DATASETS.get(name)
    except Exception:
        return None
    size = (kwargs or {}).get("image_size")
    if size is None:
        try:
            param = inspect.signature(loader).parameters.get("image_size")
        except (TypeError, ValueError):
            param = None
        if param is not None and param.default is not inspect.Parameter.empty:
            size = param.default
    if size is None:
        size = getattr(loader, "image_size", None)
    if isinstance(size, int) and not isinstance(size, bool):
        return (size, size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return (int(size[0]), int(size[1]))
    return None


@overload
def data_root(root: str | os.PathLike | None, default: str, must_exist: bool = True) -> Path: ...
@overload
def data_root(root: str | os.PathLike | None, default: None = None, must_exist: bool = True) -> Path | None: ...
def data_root(root: str | os.PathLike | None, default: str | None = None, must_exist: bool = True) -> Path | None:
    """The folder a loader reads from: ``root``, else ``$SSL_BENCH_DATA``, else ``default``. A root
    the user gave (either of the first two) is strict: it is never replaced by another location,
    it may not be a file, and it must exist (a :class:`DatasetNotFoundError` otherwise), unless
    ``must_exist=False``: then the loader's own not-found error names the folder and how to fill it."""
    if root:
        return given_root(root, "--data-root", must_exist)
    env = os.environ.get("SSL_BENCH_DATA")
    if env:
        return given_root(env, "SSL_BENCH_DATA", must_exist)
    return Path(default) if default else None


def given_root(root: str | os.PathLike, source: str, must_exist: bool = True) -> Path:
    """``root`` as a Path when it is an existing folder (or, without ``must_exist``, nothing yet);
    else a one-line error naming ``source`` (``--data-root`` or ``SSL_BENCH_DATA``)."""
    p = Path(root)
    if p.is_dir() or not (p.exists() or must_exist):
        return p
    why = "is a file, not a folder" if p.exists() else "does not exist"
    raise DatasetNotFoundError(
        f"data root {p} ({source}) {why}: give the folder that holds the dataset, or leave {source} unset "
        "to use the default location"
    )


#: Suffix of a checksum file next to a dataset file: ``train-images-idx3-ubyte.gz.sha256`` holds the
#: hex SHA-256 of ``train-images-idx3-ubyte.gz`` (``sha256sum`` output is accepted as it is).
CHECKSUM_SUFFIX = ".sha256"
_VERIFIED: dict[tuple[str, int, int], str] = {}


def verify_checksum(path: Path) -> bool:
    """Verify ``path`` against ``<path>.sha256`` when that file exists (True), else do nothing
    (False). A mismatch is a :class:`DatasetNotFoundError` naming both digests. Verified once per
    process for a given (path, size, mtime)."""
    import hashlib

    path = Path(path)
    sidecar = path.with_name(path.name + CHECKSUM_SUFFIX)
    if not sidecar.is_file():
        return False
    words = sidecar.read_text(errors="replace").split()
    expected = words[0].lower() if words else ""
    if len(expected) != 64 or any(ch not in "0123456789abcdef" for ch in expected):
        raise DatasetNotFoundError(f"{sidecar} does not hold a SHA-256 digest (64 hex digits)")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if _VERIFIED.get(key) != expected:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != expected:
            raise DatasetNotFoundError(
                f"{path} does not match its checksum ({sidecar}: {expected[:16]}..., "
                f"file: {h.hexdigest()[:16]}...): download it again"
            )
        _VERIFIED[key] = expected
    return True


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xf = x.float().div(255.0)
    dims = [0, 2, 3]
    return tuple(xf.mean(dims).tolist()), tuple(xf.std(dims).clamp_min(1e-3).tolist())


# --------------------------------------------------------------------------------------------
# Helpers of several loaders
# --------------------------------------------------------------------------------------------
def dataset_missing(name: str, root: Path, hint: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"{name} not found under {root}: {hint} (or set SSL_BENCH_DATA)")


def folder_options(
    name: str,
    root: str | os.PathLike | None,
    image_size: int,
    channels: int,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    stats_sample: int,
) -> tuple[Path, Path]:
    base = data_root(root)
    if base is None:
        raise DatasetNotFoundError(
            f"{name} needs a root: pass --data-root DIR (DIR/train/<class>/*.png, DIR/test/... or DIR/val/...)"
        )
    test_dir = next((base / s for s in ("test", "val") if (base / s).is_dir()), None)
    if not (base / "train").is_dir() or test_dir is None:
        raise DatasetNotFoundError(f"{name}: expected {base}/train/<class>/ and {base}/test/<class>/ (or val/)")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 4 <= image_size <= 4096:
        raise DatasetNotFoundError(f"{name}: image_size must be an integer in [4, 4096], got {image_size!r}")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ConfigError(f"{name} option 'channels' must be 1 (grey) or 3 (RGB), got {channels!r}")
    for k, v in (("mean", mean), ("std", std)):
        if v is not None and (
            not isinstance(v, (list, tuple))
            or len(v) != channels
            or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in v)
        ):
            raise ConfigError(f"{name} option {k!r} must be a list of {channels} numbers, got {v!r}")
    if (mean is None) != (std is None):
        raise ConfigError(f"{name}: give both 'mean' and 'std' or neither")
    if isinstance(stats_sample, bool) or not isinstance(stats_sample, int) or stats_sample < 1:
        raise ConfigError(f"{name} option 'stats_sample' must be an integer >= 1, got {stats_sample!r}")
    return base, test_dir


def _sampled_stats(src: FileImages, n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Channel mean/std of ``n`` training images drawn with seed 0 (unreadable ones left out)."""
    idx = subsample_indices(len(src), n, torch.Generator().manual_seed(0)) if len(src) > n else range(len(src))
    xs = [a for a in (src.decode(int(i))[0] for i in idx) if a is not None]
    if not xs:
        raise DatasetNotFoundError(f"imagefolder {src.root}: none of {len(idx)} sampled files is a readable image")
    return channel_stats(torch.from_numpy(np.stack(xs)))


def streamed_folder(
    name: str,
    base: Path,
    test_dir: Path,
    image_size: int,
    channels: int,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    stats_sample: int,
    info: dict | None = None,
) -> Data:
    rel, labels, classes = list_image_folder(base / "train")
    rel_te, labels_te, _ = list_image_folder(test_dir, classes)
    tr = FileImages(base / "train", rel, labels, image_size, channels)
    te = FileImages(test_dir, rel_te, labels_te, image_size, channels)
    if mean is None or std is None:  # folder_options: both or neither
        mean, std = _sampled_stats(tr, stats_sample)
    return Data(
        name,
        tr,
        torch.from_numpy(labels),
        te,
        torch.from_numpy(labels_te),
        len(classes),
        DataKind.IMAGE,
        tuple(float(m) for m in mean),
        tuple(float(s) for s in std),
        info={"classes": classes, "streamed": True, **(info or {})},
    )
