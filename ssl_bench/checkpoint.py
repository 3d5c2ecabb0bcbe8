"""Checkpoints: encoder weights as safetensors + JSON metadata; resume state for torch.load.

Layout of a run directory::

    checkpoints/epoch_0003.safetensors   backbone weights, metadata["ssl_bench"] = JSON
    checkpoints/epoch_0003.json          the same metadata, for people
    checkpoints/resume.pt                full training state (weights_only=True-loadable)

Every file is written to a temporary name and renamed, so a killed run never leaves a
half-written checkpoint under the real name; the file gets the mode the umask gives a new file
(or keeps the mode of the file it replaces), and temporary files a killed process left behind
are removed by the next process that locks the run (:func:`run_lock`, :func:`remove_stale_tmp`).

The metadata of an encoder checkpoint carries ``weights_sha256``, a digest of its tensors
(names, dtypes, shapes, bytes), verified by :func:`read_encoder`: flipped bytes are an error.
Checkpoints written before the digest existed load without the check.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from .errors import CheckpointError, SSLBenchError, not_a_file
from .kinds import DataKind

META_KEY = "ssl_bench"
DIGEST_KEY = "weights_sha256"
TMP_SUFFIX = ".tmp"
LOCK_NAME = ".lock"


def _new_file_mode(path: Path) -> int:
    """The mode ``path`` keeps (when it exists) or a new file gets under the current umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return 0o666 & ~old


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` (same directory, so rename is atomic).
    The result has the mode of the file it replaces, else the umask's (never mkstemp's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)  # the writer may replace the file (safetensors does): the mode is set after
        os.chmod(tmp, mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise naming(exc, path) from exc
        raise


def naming(exc: OSError, path: str | Path) -> OSError:
    """``exc`` when it names a file; else the same error (errno, message) naming ``path``: a write
    that fails on a full disk (ENOSPC) or a file-size limit (EFBIG) raises an OSError without a
    file name, and the one-line error must say which file could not be written."""
    if exc.filename is not None:
        return exc
    return OSError(exc.errno, exc.strerror or str(exc) or type(exc).__name__, str(path))


def atomic_write_dir(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_dir)`` on a new folder beside ``path``, then move it to ``path`` (a folder
    already there is replaced); if anything fails, the partial folder is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{path.name}.", dir=path.parent))
    try:
        write(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:
        raise naming(exc, path) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def remove_stale_tmp(*dirs: Path) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` a killed process left in ``dirs`` (call
    it while holding the run's lock: then no live writer owns them). Returns what was removed."""
    gone = []
    for d in dirs:
        if not Path(d).is_dir():
            continue
        for p in Path(d).glob(f".*{TMP_SUFFIX}"):
            try:
                if p.is_file():
                    p.unlink()
                    gone.append(p)
            except FileNotFoundError:
                pass
    return gone


def tensors_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().to("cpu").contiguous()
        h.update(f"{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(
                t.view(-1).view(torch.uint8).numpy().tobytes()
                if t.dtype != torch.uint8
                else t.view(-1).numpy().tobytes()
            )
    return h.hexdigest()


def artifact_dir(checkpoint: Path) -> Path:
    """Where evaluators write files (spectra, reconstruction grids) for a checkpoint: the run's
    ``artifacts/`` folder (``<run>/artifacts/`` for ``<run>/checkpoints/epoch_NNNN.safetensors``,
    each file prefixed ``epoch_NNNN-``), the same folder a baseline run writes to; a checkpoint
    outside a ``checkpoints/`` folder gets ``artifacts/`` next to it."""
    checkpoint = Path(checkpoint)
    parent = checkpoint.parent
    return (parent.parent if parent.name == "checkpoints" else parent) / "artifacts"


def save_encoder(path: Path, backbone: torch.nn.Module, meta: dict[str, Any]) -> None:
    state = {k: v.detach().to("cpu").contiguous() for k, v in backbone.state_dict().items()}
    meta = {**meta, DIGEST_KEY: tensors_digest(state)}
    blob = json.dumps(meta, sort_keys=True, default=str)
    from safetensors.torch import save as save_bytes

    # serialised in memory, written with plain file I/O: a full disk or a file-size limit is an
    # OSError (ENOSPC, EFBIG), never a library error halfway through a file
    data = save_bytes(state, metadata={META_KEY: blob})
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")


def read_encoder(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (state_dict, metadata); any damage becomes a one-line CheckpointError."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(not_a_file("checkpoint", p))
    try:
        with safe_open(str(p), framework="pt") as f:
            meta_raw = (f.metadata() or {}).get(META_KEY)
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {p} is corrupt or not a safetensors file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if meta_raw is None:
        raise CheckpointError(f"checkpoint {p} has no ssl-bench metadata (was it written by ssl-bench?)")
    try:
        meta = json.loads(meta_raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {p} has unreadable metadata: {exc}") from exc
    check_meta(p, meta)
    want = meta.get(DIGEST_KEY)
    if want is not None:
        got = tensors_digest(state)
        if got != want:
            raise CheckpointError(
                f"checkpoint {p} is damaged: its weights do not match the digest in its "
                f"metadata ({DIGEST_KEY} {str(want)[:12]}... != {got[:12]}...)"
            )
    return state, meta


def check_meta(p: Path, meta: Any) -> None:
    """The metadata fields evaluation relies on, with the right types; else a one-line CheckpointError."""
    from .config import RunConfig
    from .errors import ConfigError

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {p} has malformed metadata: {why}")

    if not isinstance(meta, dict):
        raise bad(f"expected a JSON object, got {type(meta).__name__}")
    for k in ("config", "kind", "input_shape", "epoch", "run_id", "backbone", "config_hash"):
        if k not in meta:
            raise bad(f"missing {k!r}")
    if not isinstance(meta["config"], dict):
        raise bad("'config' is not an object")
    try:
        RunConfig.from_dict(meta["config"])
    except ConfigError as exc:
        raise bad(f"config: {exc}") from None
    if meta["kind"] not in tuple(DataKind):
        raise bad(f"'kind' must be 'image' or 'vector', got {meta['kind']!r}")
    shp = meta["input_shape"]
    if (
        not isinstance(shp, list)
        or not 1 <= len(shp) <= 4
        or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1 << 16 for v in shp)
    ):
        raise bad(f"'input_shape' must be a list of 1-4 positive integers, got {shp!r}")
    if meta["kind"] == DataKind.IMAGE and len(shp) != 3:
        raise bad(f"an image checkpoint needs input_shape [C, H, W], got {shp!r}")
    if isinstance(meta["epoch"], bool) or not isinstance(meta["epoch"], int) or meta["epoch"] < 0:
        raise bad(f"'epoch' must be an integer >= 0, got {meta['epoch']!r}")
    for k in ("run_id", "backbone", "config_hash", DIGEST_KEY):
        if k in meta and not isinstance(meta[k], str):
            raise bad(f"{k!r} must be a string, got {meta[k]!r}")
    ts = meta.get("train_seconds")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float))):
        raise bad(f"'train_seconds' must be a number, got {ts!r}")


#: Values (parameters and buffers) a model rebuilt from checkpoint metadata may hold beyond the
#: backbone weights the checkpoint carries and two copies of them (an EMA target, a teacher): the
#: heads (projector, predictor, decoder) evaluation rebuilds from the metadata alone. 2**28 (1 GiB
#: in fp32) is above the largest head of a built-in method (about 151M values: vicreg's
#: 8192-wide projector on resnet50-cifar).
MAX_HEAD_VALUES = 1 << 28


def build_to_fit(path: Path, state: dict[str, torch.Tensor], build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``build()`` (a model with a ``backbone`` whose weights are ``state``), after checking on the
    meta device, where building allocates nothing, that the model the metadata describes holds
    exactly the checkpoint's tensors (names and shapes) plus heads of at most twice their values
    and :data:`MAX_HEAD_VALUES`: crafted or mismatched metadata (backbone widths, head sizes) is a one-line
    CheckpointError before any memory is allocated, never a model sized by the metadata alone."""
    with torch.device("meta"):
        probe = build()
    want = {k: tuple(v.shape) for k, v in getattr(probe, "backbone", probe).state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    for k in sorted(set(want) | set(have)):
        if want.get(k) != have.get(k):
            what = (
                f"has no tensor {k!r}"
                if k not in have
                else f"holds a tensor {k!r} that the model lacks"
                if k not in want
                else f"holds {k!r} of shape {list(have[k])}, the model needs {list(want[k])}"
            )
            raise CheckpointError(
                f"checkpoint {path}: its metadata describes another model than its weights "
                f"(the checkpoint {what}); nothing was built"
            )
    held = sum(t.numel() for t in state.values())
    extra = sum(t.numel() for t in probe.state_dict().values()) - held
    if extra > 2 * held + MAX_HEAD_VALUES:
        raise CheckpointError(
            f"checkpoint {path}: its metadata asks for heads of {extra:,} values beyond the {held:,} of its weights "
            f"(at most twice those plus {MAX_HEAD_VALUES:,}); refused before building"
        )
    return build()


def check_data_fits(path: Path, meta: dict[str, Any], dataset: str, kind: str, input_shape: tuple[int, ...]) -> None:
    """The data a checkpoint is evaluated on must be of the kind it was trained on, with the same
    input channels (images) or dimension (vectors); else a one-line CheckpointError."""
    want = tuple(meta["input_shape"])
    if kind != meta["kind"] or (want[:1] if kind == DataKind.IMAGE else want) != (
        input_shape[:1] if kind == DataKind.IMAGE else input_shape
    ):
        raise CheckpointError(
            f"checkpoint {path} was trained on {meta['kind']} data of shape {list(want)}; dataset {dataset!r} "
            f"is {kind} data of shape {list(input_shape)}: pick a dataset of the same kind and "
            f"{'channels' if meta['kind'] == DataKind.IMAGE else 'dimension'}"
        )


def save_resume(path: Path, state: dict[str, Any]) -> None:
    import io

    buf = io.BytesIO()  # see save_encoder: file errors stay OSErrors
    torch.save(state, buf)
    data = buf.getbuffer()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def load_resume(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"resume state {path} is corrupt ({type(exc).__name__}); delete it to restart the run from scratch"
        ) from exc
    need = ("method", "optimizer", "scheduler", "rng_cpu", "epoch", "step", "train_seconds", "config_hash")
    if not isinstance(state, dict) or any(k not in state for k in need):
        raise CheckpointError(
            f"resume state {path} is incomplete (needs {', '.join(need)}); delete it to restart the run from scratch"
        )
    for k in ("epoch", "step"):
        if isinstance(state[k], bool) or not isinstance(state[k], int) or state[k] < 0:
            raise CheckpointError(f"resume state {path}: {k!r} must be an integer >= 0, got {state[k]!r}")
    return state


# --------------------------------------------------------------------------------------------
# Run-directory lock
# --------------------------------------------------------------------------------------------
class RunLockedError(SSLBenchError):
    """Another live process trains or evaluates this run directory."""


_HELD: dict[str, list] = {}  # lock path -> [fd, depth]: re-entrant within one process


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, ValueError, OverflowError):
        return False
    return True


def _read_holder(path: Path) -> dict:
    try:
        d = json.loads(Path(path).read_text() or "{}")
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def run_lock(run_dir: Path, what: str) -> Iterator[Path]:
    """Hold ``run_dir/.lock`` (an advisory ``flock`` on a file holding our PID) for the block.

    A second process gets a one-line :class:`RunLockedError` naming the holder's PID. The kernel
    drops the lock of a process that dies, so a lock file left by a dead PID is taken over. Where
    ``flock`` is missing, the PID in the file decides (a dead PID's lock is taken over).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield path
        finally:
            _HELD[key][1] -= 1
        return
    fd = _acquire(path, what)
    _HELD[key] = [fd, 1]
    try:
        yield path
    finally:
        del _HELD[key]
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)


def _acquire(path: Path, what: str) -> int:
    try:
        fcntl: ModuleType | None = importlib.import_module("fcntl")
    except ImportError:  # pragma: no cover - not on Linux/macOS
        fcntl = None
    me = (
        json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "what": what,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        + "\n"
    )
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _read_holder(path)
                    raise RunLockedError(_locked_msg(path, holder)) from None
            else:
                holder = _read_holder(path)
                pid = holder.get("pid")
                if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
                    raise RunLockedError(_locked_msg(path, holder))
            try:  # the file we locked must still be the one at the path (not unlinked by its releaser)
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.encode(), 0)
            return fd
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
    raise RunLockedError(f"{path.parent}: could not take the run lock {path} (it keeps changing hands)")


def _locked_msg(path: Path, holder: dict) -> str:
    pid = holder.get("pid", "?")
    what = holder.get("what", "using")
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    since = f" since {holder['since']}" if holder.get("since") else ""
    return (
        f"{path.parent} is locked by PID {pid}{where} ({what}{since}): wait for it to finish, or delete "
        f"{path} if that process is gone"
    )


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
