"""Fixtures of the streaming-path tests: Fashion-MNIST as a folder of 70k PNG files (written once
per session) and a 10k-file folder of hard links into it. (Not a conftest.py: a second module
named ``conftest`` would shadow tests/conftest.py for the modules that import it by name.)"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fmnist_folder import write_fmnist_folder  # noqa: E402


@pytest.fixture(scope="session")
def fmnist_png(tmp_path_factory) -> Path:
    """``train/<label>/<index>.png`` (60k) and ``test/<label>/<index>.png`` (10k)."""
    return write_fmnist_folder(tmp_path_factory.mktemp("fmnist-png"))


@pytest.fixture(scope="session")
def fmnist_png_10k(fmnist_png, tmp_path_factory) -> Path:
    """The first 8,571 training and 1,429 test images of :func:`fmnist_png` (10k files), hard-linked."""
    root = tmp_path_factory.mktemp("fmnist-png-10k")
    for split, n in (("train", 8571), ("test", 1429)):
        for c in range(10):
            (root / split / str(c)).mkdir(parents=True)
            for f in os.scandir(fmnist_png / split / str(c)):
                if int(f.name[:5]) < n:
                    os.link(f.path, root / split / str(c) / f.name)
    return root
