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
