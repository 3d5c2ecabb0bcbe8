"""Checkpoints: encoder weights as safetensors + JSON metadata; resume state for torch.load.

Layout of a run directory::

    checkpoints/epoch_0003.safetensors   backbone weights, metadata["ssl_bench"] = JSON
    checkpoints/epoch_0003.json          the same metadata, for people
    checkpoints/resume.pt                full training state (weights_only=True-loadable)

Every file is written to a temporary name and renamed, so a killed run never leaves a
half-written checkpoint under the real name.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import CheckpointError

META_KEY = "ssl_bench"


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` (same directory, so rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_encoder(path: Path, backbone: torch.nn.Module, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous() for k, v in backbone.state_dict().items()}
    blob = json.dumps(meta, sort_keys=True, default=str)
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata={META_KEY: blob}))
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")


def read_encoder(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (state_dict, metadata); any damage becomes a one-line CheckpointError."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta_raw = (f.metadata() or {}).get(META_KEY)
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"checkpoint {p} is corrupt or not a safetensors file ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if meta_raw is None:
        raise CheckpointError(f"checkpoint {p} has no ssl-bench metadata (was it written by ssl-bench?)")
    try:
        meta = json.loads(meta_raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {p} has unreadable metadata: {exc}") from exc
    return state, meta


def save_resume(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_resume(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"resume state {path} is corrupt ({type(exc).__name__}); "
                              f"delete it to restart the run from scratch") from exc


def latest_epoch_checkpoint(ckpt_dir: Path) -> Path | None:
    files = sorted(Path(ckpt_dir).glob("epoch_*.safetensors"))
    return files[-1] if files else None


def file_digest(path: Path, n: int = 12) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]
