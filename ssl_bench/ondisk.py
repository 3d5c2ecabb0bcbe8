"""Arrays on disk: embeddings written in chunks to ``.npy`` files and read back in chunks.

A streamed dataset's embeddings never exist whole in RAM: :class:`NpyWriter` appends rows to a
``.npy`` file (its header is rewritten with the final row count on close), :func:`open_npy`
opens it memory-mapped (any code that takes an array can read it), and evaluators that must
stay within a fixed memory read it with :func:`read_rows` / :func:`take_rows`, which go through
the file instead of the mapping: pages read that way sit in the page cache, not in the
process's resident set, so peak memory does not grow with N.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

#: Length of the ``.npy`` header written here (magic + version + length + padded dict): fixed, so
#: that the header can be rewritten in place with the final shape.
_HEADER_LEN = 256
#: Rows read at once by the chunked readers (at most this many bytes: 64 MiB).
CHUNK_BYTES = 64 << 20


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    descr = np.lib.format.dtype_to_descr(dtype)
    d = "{" + f"'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, " + "}"
    pad = _HEADER_LEN - 10 - len(d) - 1
    if pad < 0:
        raise ValueError(f"npy header too long for shape {shape}")
    body = (d + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body


class NpyWriter:
    """Append rows of ``(n, *row_shape)`` to a ``.npy`` file; ``close()`` writes the row count."""

    def __init__(self, path: str | os.PathLike, row_shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> None:
        self.path, self.row_shape, self.dtype = Path(path), tuple(row_shape), np.dtype(dtype)
        self.rows = 0
        self._f = open(self.path, "wb")
        self._f.write(_header(self.dtype, (0, *self.row_shape)))

    def append(self, a: np.ndarray) -> None:
        a = np.ascontiguousarray(a, dtype=self.dtype)
        if a.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path}: rows of shape {a.shape[1:]} appended to rows of {self.row_shape}")
        self._f.write(a.tobytes())
        self.rows += len(a)

    def close(self) -> Path:
        if not self._f.closed:
            self._f.seek(0)
            self._f.write(_header(self.dtype, (self.rows, *self.row_shape)))
            self._f.close()
        return self.path

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def save_npy(path: str | os.PathLike, a: np.ndarray) -> Path:
    with NpyWriter(path, a.shape[1:], a.dtype) as w:
        w.append(a)
    return Path(path)


def open_npy(path: str | os.PathLike) -> np.ndarray:
    """The array of a ``.npy`` file, memory-mapped read-only (an empty file: an empty array)."""
    a = np.load(path, mmap_mode="r", allow_pickle=False)
    return a


def is_on_disk(a: object) -> bool:
    """True for a whole ``.npy`` array opened by :func:`open_npy` (not a view of part of one)."""
    if not isinstance(a, np.memmap) or getattr(a, "filename", None) is None or not a.flags.c_contiguous:
        return False
    try:
        return int(a.offset) + len(a) * _row_bytes(a) == os.path.getsize(a.filename)  # type: ignore[arg-type]
    except OSError:
        return False


def _row_bytes(a: np.ndarray) -> int:
    return int(a.dtype.itemsize * int(np.prod(a.shape[1:], dtype=np.int64)))


def read_rows(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Rows ``[lo, hi)`` as an in-memory array (read through the file when ``a`` is on disk)."""
    hi = min(hi, len(a))
    if not isinstance(a, np.memmap) or not is_on_disk(a):
        return np.array(a[lo:hi])
    return _read_file_rows(a, lo, hi, _row_bytes(a))


def _read_file_rows(a: np.memmap, lo: int, hi: int, rb: int) -> np.ndarray:
    # np.load(mmap_mode) maps the whole file from offset 0 past the header: a.offset is the header
    with open(a.filename, "rb") as f:  # type: ignore[arg-type]
        f.seek(int(a.offset) + lo * rb)
        buf = f.read((hi - lo) * rb)
    return np.frombuffer(buf, dtype=a.dtype).reshape(hi - lo, *a.shape[1:]).copy()


def chunks(a: np.ndarray, rows: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows) of ``a`` in chunks of ``rows`` (default: :data:`CHUNK_BYTES` worth)."""
    rows = rows or max(1, CHUNK_BYTES // max(1, _row_bytes(a)))
    for lo in range(0, len(a), rows):
        yield lo, read_rows(a, lo, lo + rows)


def take_rows(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``a[idx]`` (in the order of ``idx``) without mapping the whole of an on-disk ``a``."""
    idx = np.asarray(idx, dtype=np.int64)
    if not is_on_disk(a):
        return np.asarray(a[idx])
    out = np.empty((len(idx), *a.shape[1:]), dtype=a.dtype)
    order = np.argsort(idx, kind="stable")
    srt = idx[order]
    rows = max(1, CHUNK_BYTES // max(1, _row_bytes(a)))
    for lo in range(0, len(a), rows):
        a_lo, a_hi = np.searchsorted(srt, [lo, lo + rows])
        if a_hi > a_lo:
            block = read_rows(a, lo, lo + rows)
            out[order[a_lo:a_hi]] = block[srt[a_lo:a_hi] - lo]
    return out


__all__ = ["CHUNK_BYTES", "NpyWriter", "chunks", "is_on_disk", "open_npy", "read_rows", "save_npy", "take_rows"]
