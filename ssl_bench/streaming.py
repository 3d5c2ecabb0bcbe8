"""The streaming data path: images that stay on disk and are decoded by DataLoader workers.

A dataset that does not fit in memory hands the trainer an :class:`ImageSource` instead of a
uint8 tensor (``Data.x_train`` / ``Data.x_pretrain``): a list of files (:class:`FileImages`, an
image folder, ImageNet) or the records of one binary file read through a memory map
(:class:`BinImages`, STL-10's 100k unlabelled images). Which path a run takes is decided by the
dataset, never by the method.

* :class:`EpochBatches` is the batch sampler: the epoch's order is the same seeded permutation the
  in-memory path draws (``seed * 100_003 + epoch``), it starts at any batch (mid-epoch resume),
  and under DDP each rank reads only its own slice of every global batch (the
  ``DistributedSampler`` equivalent). The trainer all-gathers the uint8 slices, so every rank
  sees the global batch and the views stay those of one process.
* DataLoader workers decode and resize files into fixed-size ``(B, C, S, S)`` uint8 batches; the
  views then run on the training device as for in-memory data.
* An unreadable file (truncated, empty, not an image) never stops a run: during training its
  slot is filled by the next readable file of the list; during evaluation its row is dropped.
  Either way the file is counted (:class:`CorruptFiles`), warned about once, and the count goes
  into the run's metadata.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: one item of a streamed split: (CHW uint8 image, label, [(name, reason) of unreadable files met], ok)
DecodedItem = tuple[torch.Tensor, int, list[tuple[str, str]], bool]

#: Files whose name starts with one of these are never listed (editor and OS droppings).
HIDDEN_PREFIXES = (".", "~")
#: At most this many files of a substitution walk are tried before a batch gives up.
MAX_SUBSTITUTIONS = 1000


class ImageSource:
    """N images of shape ``(channels, size, size)`` decoded on demand; subclasses say from where."""

    labels: np.ndarray
    size: int
    channels: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.channels, self.size, self.size)

    def take(self, idx: torch.Tensor | np.ndarray | Sequence[int]) -> ImageSource:  # pragma: no cover
        raise NotImplementedError

    def __getitem__(self, idx: torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
        """The images at ``idx`` decoded here, as one uint8 tensor ``(len(idx), C, S, S)``: for
        the evaluators that look at a sample of images (LiDAR, reconstruction). An unreadable
        item is replaced by the next readable one, as in training, with a warning."""
        items = _Decoded(self, substitute=True)
        out = []
        for i in np.asarray(idx, dtype=np.int64).reshape(-1).tolist():
            x, _, bad, _ = items[i]
            for name, reason in bad:
                warnings.warn(f"skipped unreadable image {name} ({reason})", RuntimeWarning, stacklevel=2)
            out.append(x)
        if not out:
            return torch.zeros(0, self.channels, self.size, self.size, dtype=torch.uint8)
        return torch.stack(out)

    def decode(self, i: int) -> tuple[np.ndarray | None, str]:  # pragma: no cover
        """``(CHW uint8 array, "")`` or ``(None, reason)`` for an unreadable item."""
        raise NotImplementedError

    def name_of(self, i: int) -> str:  # pragma: no cover
        raise NotImplementedError

    def fingerprint(self) -> str:  # pragma: no cover
        """What identifies the images without reading them all (names, sizes, mtimes)."""
        raise NotImplementedError


def _to_chw(im: PILImage, size: int, channels: int) -> np.ndarray:
    from PIL import Image

    im = im.convert("L" if channels == 1 else "RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    a = np.array(im, dtype=np.uint8)  # a writable copy (torch.from_numpy warns on read-only arrays)
    return a[None] if channels == 1 else np.ascontiguousarray(a.transpose(2, 0, 1))


class FileImages(ImageSource):
    """Image files under ``root`` (``rel`` holds their relative paths as bytes, one numpy array:
    no per-file Python object, so forked workers do not copy the list)."""

    def __init__(
        self, root: str | os.PathLike, rel: np.ndarray, labels: np.ndarray, size: int, channels: int = 3
    ) -> None:
        self.root = str(root)
        self.rel = rel
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size, self.channels = int(size), int(channels)

    def take(self, idx: torch.Tensor | np.ndarray | Sequence[int]) -> FileImages:
        idx = np.asarray(idx, dtype=np.int64)
        return FileImages(self.root, self.rel[idx], self.labels[idx], self.size, self.channels)

    def path(self, i: int) -> str:
        return os.path.join(self.root, os.fsdecode(self.rel[i]))

    def name_of(self, i: int) -> str:
        return self.path(i)

    def decode(self, i: int) -> tuple[np.ndarray | None, str]:
        from PIL import Image

        try:
            with Image.open(self.path(i)) as im:
                return _to_chw(im, self.size, self.channels), ""
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # PIL.UnidentifiedImageError is an OSError; truncated files raise OSError
            return None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.root}|{self.size}|{self.channels}|{len(self)}".encode())
        h.update(self.rel.tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()


class BinImages(ImageSource):
    """Records of a raw uint8 file of ``(N, C, H, W)`` images (STL-10's ``*_X.bin``), read through a
    memory map; ``transpose`` swaps H and W (STL-10 stores its images column-major)."""

    def __init__(
        self,
        path: str | os.PathLike,
        n: int,
        chw: tuple[int, ...],
        size: int,
        index: np.ndarray | None = None,
        transpose: bool = False,
    ) -> None:
        self.path, self.n, self.chw, self.transpose = str(path), int(n), tuple(chw), transpose
        self.index = np.arange(n, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
        self.labels = np.full(len(self.index), -1, dtype=np.int64)
        self.size, self.channels = int(size), int(chw[0])
        self._mm: np.memmap | None = None

    def __getstate__(self) -> dict:  # the memory map is reopened in each worker
        return {**self.__dict__, "_mm": None}

    def take(self, idx: torch.Tensor | np.ndarray | Sequence[int]) -> BinImages:
        return BinImages(
            self.path, self.n, self.chw, self.size, self.index[np.asarray(idx, dtype=np.int64)], self.transpose
        )

    def name_of(self, i: int) -> str:
        return f"{self.path}[{int(self.index[i])}]"

    def decode(self, i: int) -> tuple[np.ndarray | None, str]:
        import torch.nn.functional as F

        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(self.n, *self.chw))
        a = np.asarray(self._mm[int(self.index[i])])
        if self.transpose:
            a = a.transpose(0, 2, 1)
        if a.shape[1:] != (self.size, self.size):
            t = F.interpolate(
                torch.from_numpy(np.ascontiguousarray(a))[None].float(),
                size=(self.size, self.size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
            return t[0].round().clamp(0, 255).to(torch.uint8).numpy(), ""
        return np.ascontiguousarray(a), ""

    def fingerprint(self) -> str:
        import hashlib

        st = os.stat(self.path)
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.path}|{st.st_size}|{st.st_mtime_ns}|{self.chw}|{self.size}|{self.transpose}".encode())
        h.update(self.index.tobytes())
        return h.hexdigest()


def is_streamed(x: Any) -> bool:
    return isinstance(x, ImageSource)


# ----------------------------------------------------------------------------------- listing
def list_image_folder(folder: Path, classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(relative paths as bytes, labels, classes) of ``folder/<class>/**/<file>``: every regular
    file that is not hidden, sorted, classes in sorted order. Files are not opened here: one
    that is not a readable image is skipped (and counted) when a worker decodes it."""
    from .errors import DatasetNotFoundError

    try:
        found = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(HIDDEN_PREFIXES))
    except OSError as exc:
        raise DatasetNotFoundError(f"imagefolder {folder}: {exc.strerror or exc}") from None
    if classes is None:
        classes = found
    elif found != classes:
        raise DatasetNotFoundError(f"imagefolder: class folders differ between train and {folder.name}")
    if not classes:
        raise DatasetNotFoundError(f"imagefolder {folder}: no class folders")
    rel: list[bytes] = []
    labels: list[int] = []
    for c, name in enumerate(classes):
        files: list[str] = []
        for dirpath, dirnames, filenames in os.walk(folder / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(HIDDEN_PREFIXES))
            sub = os.path.relpath(dirpath, folder)
            files += [os.path.join(sub, f) for f in filenames if not f.startswith(HIDDEN_PREFIXES)]
        if not files:
            raise DatasetNotFoundError(f"imagefolder {folder}: class folder {name!r} holds no files")
        files.sort()
        rel += [os.fsencode(f) for f in files]
        labels += [c] * len(files)
    return np.array(rel, dtype=bytes), np.array(labels, dtype=np.int64), classes


# ----------------------------------------------------------------------------------- corrupt files
class CorruptFiles:
    """The unreadable items met so far (by name), each warned about once."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.names: list[str] = list(names)
        self._seen = set(self.names)

    def add(self, name: str, reason: str) -> None:
        if name in self._seen:
            return
        self._seen.add(name)
        self.names.append(name)
        warnings.warn(
            f"skipped unreadable image {name} ({reason}); {len(self.names)} skipped so far",
            RuntimeWarning,
            stacklevel=2,
        )

    def merge(self, names: Sequence[str]) -> None:
        for n in names:
            if n not in self._seen:
                self._seen.add(n)
                self.names.append(n)

    def __len__(self) -> int:
        return len(self.names)

    def summary(self, keep: int = 20) -> dict:
        return {"count": len(self.names), "first": sorted(self.names)[:keep]}


# ----------------------------------------------------------------------------------- loading
class _Decoded(torch.utils.data.Dataset):
    """Item i -> (CHW uint8 tensor, label, [(name, reason) of unreadable items met], ok).

    ``substitute=True`` (training) fills an unreadable item with the next readable one of the
    list; ``False`` (evaluation) returns zeros and ``ok=False`` so that the row can be dropped."""

    def __init__(self, source: ImageSource, substitute: bool) -> None:
        self.source, self.substitute = source, substitute

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> DecodedItem:
        s = self.source
        bad: list[tuple[str, str]] = []
        j = int(i)
        for _ in range(min(MAX_SUBSTITUTIONS, len(s))):
            arr, reason = s.decode(j)
            if arr is not None:
                return torch.from_numpy(arr), int(s.labels[i]), bad, True
            bad.append((s.name_of(j), reason))
            if not self.substitute:
                break
            j = (j + 1) % len(s)
        if self.substitute:
            raise RuntimeError(f"{len(bad)} unreadable images in a row from {bad[0][0]}: is the dataset readable?")
        return torch.zeros(s.channels, s.size, s.size, dtype=torch.uint8), int(s.labels[i]), bad, False


def _collate(
    items: list[DecodedItem],
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]], torch.Tensor]:
    x = torch.stack([it[0] for it in items])
    y = torch.tensor([it[1] for it in items], dtype=torch.int64)
    ok = torch.tensor([it[3] for it in items], dtype=torch.bool)
    return x, y, [b for it in items for b in it[2]], ok


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of an epoch: the same for the in-memory and the streaming path."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


class EpochBatches(torch.utils.data.Sampler):
    """Batches of one epoch, from batch ``start`` on; under DDP rank ``rank`` of ``world`` gets
    rows ``[rank * B / world, (rank + 1) * B / world)`` of every global batch of size B."""

    def __init__(
        self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world: int = 1
    ) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.start, self.rank, self.world = start, rank, world
        self.per_rank = batch_size // world

    def __len__(self) -> int:
        return max(0, self.n // self.batch_size - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        perm = epoch_permutation(self.n, self.seed, self.epoch)
        for b in range(self.start, self.n // self.batch_size):
            lo = b * self.batch_size + self.rank * self.per_rank
            yield perm[lo : lo + self.per_rank].tolist()


def default_num_workers(world: int = 1) -> int:
    """Decoding workers per process: the CPUs this process may use, shared among the ranks of the
    node, one left for the training loop; at least 1, at most 16."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(16, cpus // max(1, world) - 1))


def loader(
    source: ImageSource,
    *,
    batch_sampler: Any = None,
    batch_size: int | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    substitute: bool = True,
    seed: int = 0,
    persistent: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader that decodes ``source`` into uint8 batches ``(x, y, unreadable, ok)``. Its
    workers' seeds come from its own generator (``seed``), never from torch's global one: the
    random draws of the training step stay those of the in-memory path."""
    kw: dict[str, Any] = {
        "num_workers": num_workers,
        "pin_memory": pin_memory,
        "collate_fn": _collate,
        "generator": torch.Generator().manual_seed(seed),
    }
    if num_workers > 0:
        kw["prefetch_factor"] = 4
        kw["persistent_workers"] = persistent  # a batch sampler changed between epochs is read here
    if batch_sampler is not None:
        kw["batch_sampler"] = batch_sampler
    else:
        kw.update(batch_size=batch_size, shuffle=False)
    return torch.utils.data.DataLoader(_Decoded(source, substitute), **kw)


__all__ = [
    "BinImages",
    "CorruptFiles",
    "EpochBatches",
    "FileImages",
    "ImageSource",
    "default_num_workers",
    "epoch_permutation",
    "is_streamed",
    "list_image_folder",
    "loader",
]
