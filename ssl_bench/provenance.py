"""Where a number came from: versions, git commit, hardware."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

import torch


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if out.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    from ._version import __version__

    v = {"ssl_bench": __version__, "torch": torch.__version__, "python": platform.python_version()}
    try:
        import torchvision

        v["torchvision"] = torchvision.__version__
    except Exception:  # torchvision is optional at run time
        pass
    return v


def hardware(device: torch.device | str | None = None) -> str:
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    cpu = platform.processor() or platform.machine()
    from . import threads

    return f"cpu:{cpu} x{os.cpu_count()} threads={torch.get_num_threads()} ({threads.policy()})"


#: File kinds that make up the code that runs: the sources and the data files shipped with them.
_SOURCE_SUFFIXES = (".py", ".toml")


def _package_roots() -> list[tuple[str, Path]]:
    """(package name, folder) of ssl_bench and of its sub-packages that install from elsewhere."""
    import importlib.util

    roots = []
    for name in ("ssl_bench", "ssl_bench.methods", "ssl_bench.evaluators", "ssl_bench.datasets"):
        spec = importlib.util.find_spec(name)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            roots.append((name, Path(loc)))
    return roots


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 (16 hex digits) of the package's source files (names and contents): the code that
    ran, whatever ``git_commit`` says (a copied working tree records ``-dirty`` or no commit)."""
    import hashlib

    h = hashlib.sha256()
    seen: set[Path] = set()
    for name, root in _package_roots():
        for p in sorted(root.rglob("*")):
            if p.suffix not in _SOURCE_SUFFIXES or not p.is_file() or "__pycache__" in p.parts:
                continue
            rel = p.relative_to(root)
            if name == "ssl_bench" and rel.parts[0] in ("methods", "evaluators", "datasets"):
                continue  # a sub-package: hashed under its own name (editable installs map it elsewhere)
            if p.resolve() in seen:
                continue
            seen.add(p.resolve())
            h.update(f"{name}/{rel.as_posix()}\0".encode())
            h.update(p.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:16]
