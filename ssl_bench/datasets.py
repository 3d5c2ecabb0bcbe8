"""Datasets, registered by name. Small datasets are held in memory as uint8 tensors; large ones
(``imagefolder``, ``imagenet``, STL-10's unlabelled split) stay on disk as an
:class:`~ssl_bench.streaming.ImageSource` that DataLoader workers decode (:mod:`ssl_bench.streaming`).

Every loader returns a :class:`Data`: train/test images, labels and the facts the views and
the backbones need (kind, shape, channel statistics). Nothing here downloads: a dataset that is
not on disk raises :class:`DatasetNotFoundError` with the command that gets it.

Data roots: ``root=`` argument, else ``$SSL_BENCH_DATA``, else the system location.
"""
from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import overload

import numpy as np
import torch

from .errors import ConfigError, DatasetNotFoundError
from .kinds import DataKind
from .registry import DATASETS, register_dataset
from .sampling import is_subsampled, subsample_indices
from .streaming import BinImages, FileImages, ImageSource, is_streamed, list_image_folder

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

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
               pretrain: bool = False) -> Data:
        """A seeded random subset (the same for every method, so rows stay comparable); the test
        subset is drawn after the training one, from the same generator. ``pretrain=True`` draws
        ``n_train`` from the pretraining images where the data has its own (``x_pretrain``)."""
        g = torch.Generator().manual_seed(seed)

        def take(x, y, n):
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
        raise ConfigError(f"{what} needs the images in memory; this dataset streams them from disk "
                          f"(ssl_bench.streaming)")
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
        raise ConfigError(f"validation split: size must be in [1, {n - 1}] for {full.name}'s {n} training "
                          f"examples, got {size}")
    val = subsample_indices(n, size, seed)
    keep = torch.ones(n, dtype=torch.bool)
    keep[val] = False
    pool = keep.nonzero().flatten()
    return replace(full, name=f"{full.name}-val", x_train=full.x_train[pool], y_train=full.y_train[pool],
                   x_test=full.x_train[val], y_test=full.y_train[val])


def load_dataset(name: str, root: str | os.PathLike | None = None, **kwargs) -> Data:
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


@overload
def data_root(root: str | os.PathLike | None, default: str) -> Path: ...
@overload
def data_root(root: str | os.PathLike | None, default: None = None) -> Path | None: ...
def data_root(root: str | os.PathLike | None, default: str | None = None) -> Path | None:
    if root:
        return Path(root)
    env = os.environ.get("SSL_BENCH_DATA")
    if env:
        return Path(env)
    return Path(default) if default else None


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
            raise DatasetNotFoundError(f"{path} does not match its checksum ({sidecar}: {expected[:16]}..., "
                                       f"file: {h.hexdigest()[:16]}...): download it again")
        _VERIFIED[key] = expected
    return True


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xf = x.float().div(255.0)
    dims = [0, 2, 3]
    return tuple(xf.mean(dims).tolist()), tuple(xf.std(dims).clamp_min(1e-3).tolist())


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX files)
# --------------------------------------------------------------------------------------------
FMNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


MAX_IDX_BYTES = 1 << 31


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the MNIST family's format."""
    import zlib

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetNotFoundError(f"{path} is truncated or corrupt ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else 'unexpected end of data'}); "
                                   "reinstall or download it again") from None
    except OSError as exc:
        raise DatasetNotFoundError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_IDX_BYTES:
        raise DatasetNotFoundError(f"{path} is larger than {MAX_IDX_BYTES >> 20} MiB: not an MNIST-family file")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetNotFoundError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DatasetNotFoundError(f"{path}: only uint8 IDX files are supported (type 0x{dtype_code:02x})")
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DatasetNotFoundError(f"{path} is truncated: its header is incomplete")
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DatasetNotFoundError(f"{path} is truncated: expected {int(np.prod(shape))} values, got {data.size}")
    return data.reshape(shape)


def _find_idx(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for cand in (d / f"{stem}.gz", d / stem):
            if cand.is_file():
                return cand
    return None


@register_dataset("fashion-mnist")
def fashion_mnist(root=None) -> Data:
    """Fashion-MNIST (Xiao et al. 2017): 60k/10k 28x28 grey images, 10 classes."""
    base = data_root(root)
    dirs = [base / "fashion-mnist", base] if base else []
    dirs.append(Path(FMNIST_SYSTEM_DIR))
    paths = {k: _find_idx(dirs, v) for k, v in FMNIST_FILES.items()}
    missing = [FMNIST_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        where = ", ".join(str(d) for d in dirs)
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found (looked in {where}; missing {missing[0]}.gz): "
            f"run `sudo apt-get install dataset-fashion-mnist` or set SSL_BENCH_DATA to a folder with the IDX files"
        )
    found = {k: p for k, p in paths.items() if p is not None}  # all of them (checked above)
    for p in found.values():
        verify_checksum(p)
    arrays = {k: read_idx(p) for k, p in found.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1:
            raise DatasetNotFoundError(f"{paths[split + '_x']} / {paths[split + '_y']}: expected N images (N, H, W) "
                                       f"and N labels, got shapes {x.shape} and {y.shape}")
        if len(x) != len(y) or not len(x):
            raise DatasetNotFoundError(f"{paths[split + '_y']} holds {len(y)} labels for the {len(x)} images of "
                                       f"{paths[split + '_x']}: the files do not belong together (or one is cut)")
        if y.max() >= 10:
            raise DatasetNotFoundError(f"{paths[split + '_y']}: labels must lie in [0, 10), found up to {int(y.max())}")
    xtr = torch.from_numpy(arrays["train_x"].copy()).unsqueeze(1)
    ytr = torch.from_numpy(arrays["train_y"].astype(np.int64))
    xte = torch.from_numpy(arrays["test_x"].copy()).unsqueeze(1)
    yte = torch.from_numpy(arrays["test_y"].astype(np.int64))
    return Data("fashion-mnist", xtr, ytr, xte, yte, 10, DataKind.IMAGE, (0.2860,), (0.3530,),
                info={"source": str(found["train_x"].parent)})


# --------------------------------------------------------------------------------------------
# scikit-learn digits and the 2-D mixture of Gaussians: always available
# --------------------------------------------------------------------------------------------
@register_dataset("digits")
def digits(root=None) -> Data:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), split 80/20 (seed 0)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(np.round(d.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_tr = int(0.8 * len(x))
    tr, te = perm[:n_tr].sort().values, perm[n_tr:].sort().values
    mean, std = _channel_stats(x[tr])
    return Data("digits", x[tr], y[tr], x[te], y[te], 10, DataKind.IMAGE, mean, std)


@register_dataset("mog2d")
def mog2d(root=None, n_components: int = 8, n_train: int = 4096, n_test: int = 1024,
          radius: float = 4.0, sigma: float = 0.5, seed: int = 0) -> Data:
    """2-D mixture of Gaussians: ``n_components`` on a ring, label = component."""
    for k, v, lo, hi in (("n_components", n_components, 1, 10_000), ("n_train", n_train, 2, 10_000_000),
                         ("n_test", n_test, 2, 10_000_000), ("seed", seed, 0, 2**63 - 1)):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(f"mog2d option {k!r} must be an integer in [{lo}, {hi}], got {v!r}")
    for k, num in (("radius", radius), ("sigma", sigma)):
        if isinstance(num, bool) or not isinstance(num, (int, float)) or not 0 <= num < 1e6:
            raise ConfigError(f"mog2d option {k!r} must be a number in [0, 1e6), got {num!r}")
    g = torch.Generator().manual_seed(seed)
    angles = torch.arange(n_components, dtype=torch.float32) * (2 * torch.pi / n_components)
    centers = radius * torch.stack([angles.cos(), angles.sin()], 1)

    def sample(n):
        y = torch.randint(0, n_components, (n,), generator=g)
        x = centers[y] + sigma * torch.randn(n, 2, generator=g)
        return x.float(), y.long()

    xtr, ytr = sample(n_train)
    xte, yte = sample(n_test)
    return Data("mog2d", xtr, ytr, xte, yte, n_components, DataKind.VECTOR,
                info={"centers": centers.tolist(), "sigma": sigma})


# --------------------------------------------------------------------------------------------
# torchvision-backed datasets, for users who have the files (never downloaded here)
# --------------------------------------------------------------------------------------------
def _tv_missing(name: str, root: Path, hint: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"{name} not found under {root}: {hint} (or set SSL_BENCH_DATA)")


def _images_hwc_to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous()


# CIFAR's python batches are pickles. A pickle can name any callable, so they are read with an
# unpickler that admits only what the real files contain: numpy arrays (and their dtypes), lists,
# dicts, strings and numbers. Anything else (os.system, builtins.eval, ...) is refused before it
# is looked up, so a crafted folder cannot run code.
_SAFE_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell a bytes object
}
_CIFAR = {  # folder, training batches, test batches, label key, meta file, class-name key, classes
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels",
                "batches.meta", "label_names", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", "meta", "fine_label_names", 100),
}


def safe_unpickle(path: Path):
    """Load a data pickle (CIFAR batches) admitting only numpy arrays and plain containers."""
    import pickle

    class _Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) in _SAFE_PICKLE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"refused global {module}.{name}")

    try:
        with open(path, "rb") as f:
            return _Restricted(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError) as exc:
        raise DatasetNotFoundError(f"{path} is not a CIFAR data file ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None


def _cifar_batches(folder: Path, files: list[str], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in files:
        verify_checksum(folder / name)
        d = safe_unpickle(folder / name)
        if not isinstance(d, dict):
            raise DatasetNotFoundError(f"{folder / name} is not a CIFAR batch (holds a {type(d).__name__})")
        d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
        x, y = d.get("data"), d.get(label_key)
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
            raise DatasetNotFoundError(f"{folder / name}: 'data' must be a uint8 array of shape (N, 3072)")
        y = np.asarray(y if y is not None else [], dtype=np.int64) if isinstance(y, (list, np.ndarray)) else None
        if y is None or y.shape != (len(x),):
            raise DatasetNotFoundError(f"{folder / name}: {label_key!r} must hold one label per image")
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _cifar(kind: str, root) -> Data:
    base = data_root(root, default="data")
    folder_name, train_files, test_files, label_key, meta_file, names_key, n_classes = _CIFAR[kind]
    folder = base / folder_name
    if not folder.is_dir():
        raise _tv_missing(kind.upper(), base, f"download it once with `python -c \"import torchvision; "
                          f"torchvision.datasets.{'CIFAR10' if kind == 'cifar10' else 'CIFAR100'}"
                          f"('{base}', download=True)\"`")
    missing = [f for f in train_files + test_files + [meta_file] if not (folder / f).is_file()]
    if missing:
        raise _tv_missing(kind.upper(), base, f"incomplete files in {folder} (missing {', '.join(missing)})")
    xtr, ytr = _cifar_batches(folder, train_files, label_key)
    xte, yte = _cifar_batches(folder, test_files, label_key)
    for split, y in (("train", ytr), ("test", yte)):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise DatasetNotFoundError(f"{folder}: {split} labels must lie in [0, {n_classes}), "
                                       f"found {int(y.min())}..{int(y.max())}")
    xtr_t, xte_t = torch.from_numpy(np.ascontiguousarray(xtr)), torch.from_numpy(np.ascontiguousarray(xte))
    mean, std = _channel_stats(xtr_t)
    return Data(kind, xtr_t, torch.from_numpy(ytr), xte_t, torch.from_numpy(yte), n_classes, DataKind.IMAGE, mean, std)


@register_dataset("cifar10")
def cifar10(root=None) -> Data:
    """CIFAR-10 (python pickle batches, `cifar-10-batches-py/`)."""
    return _cifar("cifar10", root)


@register_dataset("cifar100")
def cifar100(root=None) -> Data:
    """CIFAR-100 (python pickle batches, `cifar-100-python/`)."""
    return _cifar("cifar100", root)


STL10_SHAPE = (3, 96, 96)
STL10_UNLABELED = 100_000


@register_dataset("stl10")
def stl10(root=None, image_size: int | None = None, pretrain: str = "train") -> Data:
    """STL-10 (`stl10_binary/`), optionally resized. The labelled train/test splits are held in
    memory (evaluation); ``pretrain="unlabeled"`` trains on the 100k unlabelled images, streamed
    from ``unlabeled_X.bin`` through a memory map (:class:`~ssl_bench.streaming.BinImages`)."""
    from torchvision import datasets as tvd

    if pretrain not in ("train", "unlabeled"):
        raise ConfigError(f"stl10 option 'pretrain' must be 'train' or 'unlabeled', got {pretrain!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or not 8 <= image_size <= 1024):
        raise ConfigError(f"stl10 option 'image_size' must be an integer in [8, 1024], got {image_size!r}")
    base = data_root(root, default="data")

    class _NoChecksum(tvd.STL10):  # labelled splits only: the unlabelled 2.5 GB file is streamed
        def _check_integrity(self) -> bool:
            return all((Path(self.root) / self.base_folder / f).is_file()
                       for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"))

    if not (base / tvd.STL10.base_folder).is_dir():
        raise _tv_missing("STL-10", base, "download it once with `python -c \"import torchvision; "
                          f"torchvision.datasets.STL10('{base}', download=True)\"`")
    for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"):
        if (base / tvd.STL10.base_folder / f).is_file():
            verify_checksum(base / tvd.STL10.base_folder / f)
    try:
        tr, te = _NoChecksum(str(base), split="train"), _NoChecksum(str(base), split="test")
    except (RuntimeError, OSError, ValueError) as exc:
        raise _tv_missing("STL-10", base, f"incomplete files ({exc})") from exc
    xtr, xte = torch.from_numpy(tr.data.copy()), torch.from_numpy(te.data.copy())
    if image_size:
        xtr, xte = _resize_uint8(xtr, image_size), _resize_uint8(xte, image_size)
    mean, std = _channel_stats(xtr)
    unlabeled: BinImages | None = None
    info: dict = {"pretrain": pretrain}
    if pretrain == "unlabeled":
        path = base / tvd.STL10.base_folder / "unlabeled_X.bin"
        record = int(np.prod(STL10_SHAPE))
        size = path.stat().st_size if path.is_file() else -1
        if size <= 0 or size % record:
            raise _tv_missing("STL-10 unlabeled", base, f"{path} is missing or not a whole number of 3x96x96 "
                              f"images ({size} bytes)")
        verify_checksum(path)  # (2.7 GB: about 10 s, only when unlabeled_X.bin.sha256 is there)
        unlabeled = BinImages(path, size // record, STL10_SHAPE, image_size or 96, transpose=True)
        info["unlabeled"] = {"file": str(path), "images": size // record}
    return Data("stl10", xtr, torch.from_numpy(tr.labels.astype(np.int64)), xte,
                torch.from_numpy(te.labels.astype(np.int64)), 10, DataKind.IMAGE, mean, std, info=info,
                x_pretrain=unlabeled)


def _resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    import torch.nn.functional as F

    out = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def _folder_options(name: str, root, image_size, channels, mean, std, stats_sample) -> tuple[Path, Path]:
    base = data_root(root)
    if base is None:
        raise DatasetNotFoundError(f"{name} needs a root: pass --data-root DIR "
                                   "(DIR/train/<class>/*.png, DIR/test/... or DIR/val/...)")
    test_dir = next((base / s for s in ("test", "val") if (base / s).is_dir()), None)
    if not (base / "train").is_dir() or test_dir is None:
        raise DatasetNotFoundError(f"{name}: expected {base}/train/<class>/ and {base}/test/<class>/ (or val/)")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 4 <= image_size <= 4096:
        raise DatasetNotFoundError(f"{name}: image_size must be an integer in [4, 4096], got {image_size!r}")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ConfigError(f"{name} option 'channels' must be 1 (grey) or 3 (RGB), got {channels!r}")
    for k, v in (("mean", mean), ("std", std)):
        if v is not None and (not isinstance(v, (list, tuple)) or len(v) != channels
                              or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in v)):
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
    return _channel_stats(torch.from_numpy(np.stack(xs)))


def _streamed_folder(name: str, base: Path, test_dir: Path, image_size: int, channels: int, mean, std,
                     stats_sample: int, info: dict | None = None) -> Data:
    rel, labels, classes = list_image_folder(base / "train")
    rel_te, labels_te, _ = list_image_folder(test_dir, classes)
    tr = FileImages(base / "train", rel, labels, image_size, channels)
    te = FileImages(test_dir, rel_te, labels_te, image_size, channels)
    if mean is None:
        mean, std = _sampled_stats(tr, stats_sample)
    return Data(name, tr, torch.from_numpy(labels), te, torch.from_numpy(labels_te), len(classes), DataKind.IMAGE,
                tuple(float(m) for m in mean), tuple(float(s) for s in std),
                info={"classes": classes, "streamed": True, **(info or {})})


@register_dataset("imagefolder")
def imagefolder(root=None, image_size: int = 64, stream: bool = True, channels: int = 3,
                mean: list | None = None, std: list | None = None, stats_sample: int = 1000) -> Data:
    """Any ``ROOT/{train,test|val}/<class>/<image>`` tree (any format Pillow reads), resized to
    ``image_size``. Streamed by default: files stay on disk and DataLoader workers decode them,
    an unreadable file is skipped and counted. ``stream=False`` decodes everything into memory
    at load (small folders; an unreadable file is then an error). ``channels`` 1 (grey) or 3;
    ``mean``/``std`` default to the statistics of ``stats_sample`` training images."""
    from PIL import Image
    from torchvision import datasets as tvd

    base, test_dir = _folder_options("imagefolder", root, image_size, channels, mean, std, stats_sample)
    if stream:
        return _streamed_folder("imagefolder", base, test_dir, image_size, channels, mean, std, stats_sample)

    def load(folder: Path, classes: list[str] | None = None):
        try:
            ds = tvd.ImageFolder(str(folder))
        except (FileNotFoundError, OSError) as exc:  # no class folder, or a class without images
            raise DatasetNotFoundError(f"imagefolder {folder}: {' '.join(str(exc).split())}") from None
        if classes is not None and ds.classes != classes:
            raise DatasetNotFoundError(f"imagefolder: class folders differ between train and {folder.name}")
        xs = []
        for path, _ in ds.samples:
            try:
                with Image.open(path) as im:
                    rgb = im.convert("RGB" if channels == 3 else "L").resize((image_size, image_size),
                                                                             Image.Resampling.BILINEAR)
                    xs.append(np.asarray(rgb).reshape(image_size, image_size, channels))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                # PIL.UnidentifiedImageError is an OSError; truncated files raise OSError
                raise DatasetNotFoundError(f"imagefolder: cannot decode {path} ({type(exc).__name__}: "
                                           f"{' '.join(str(exc).split())[:200]}); remove or replace it") from None
        if not xs:
            raise DatasetNotFoundError(f"imagefolder {folder}: no images")
        return _images_hwc_to_tensor(np.stack(xs)), torch.tensor(ds.targets).long(), ds.classes

    xtr, ytr, classes = load(base / "train")
    xte, yte, _ = load(test_dir, classes)
    m, sd = _channel_stats(xtr) if mean is None or std is None else (tuple(mean), tuple(std))
    return Data("imagefolder", xtr, ytr, xte, yte, len(classes), DataKind.IMAGE, m, sd, info={"classes": classes})


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: Files that map WordNet ids (the class folders) to readable names, in the order tried.
IMAGENET_CLASS_FILES = ("LOC_synset_mapping.txt", "synset_words.txt", "words.txt")


def imagenet_class_names(base: Path, wnids: list[str]) -> dict[str, str]:
    """WordNet id -> readable name, from the first of :data:`IMAGENET_CLASS_FILES` under ``base``
    (lines ``n01440764 tench, Tinca tinca``); empty when there is none."""
    for fname in IMAGENET_CLASS_FILES:
        p = base / fname
        if p.is_file():
            names = {}
            for line in p.read_text(errors="replace").splitlines():
                wnid, _, name = line.strip().partition(" ")
                if wnid in wnids:
                    names[wnid] = name.strip() or wnid
            return names
    return {}


@register_dataset("imagenet")
def imagenet(root=None, image_size: int = 224, channels: int = 3, mean: list | None = None,
             std: list | None = None, stats_sample: int = 1000) -> Data:
    """ImageNet-1k or a class subset such as ImageNet-100, in the standard layout
    ``ROOT/train/<wnid>/*.JPEG`` and ``ROOT/val/<wnid>/*.JPEG``, streamed. Labels are the sorted
    WordNet ids (torchvision's order); ``info["class_names"]`` maps them to readable names when
    ``LOC_synset_mapping.txt`` (or ``synset_words.txt``) is in ROOT. Normalised with the usual
    ImageNet statistics unless ``mean``/``std`` are given."""
    base, test_dir = _folder_options("imagenet", root, image_size, channels, mean, std, stats_sample)
    if mean is None and channels == 3:
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    data = _streamed_folder("imagenet", base, test_dir, image_size, channels, mean, std, stats_sample)
    data.info["class_names"] = imagenet_class_names(base, data.info["classes"])
    return data




__all__ = ["Data", "DATASETS", "DataKind", "in_memory", "load_dataset", "read_idx", "register_dataset",
           "verify_checksum"]
