"""The study record and the registry (kept apart from the package so that study modules import
it without a cycle through ``ssl_bench.studies``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

#: Where the committed study tables live (relative to the working directory).
DEFAULT_OUT = "leaderboards/studies"
BUDGETS = ("tiny", "default")


@dataclass(frozen=True)
class Study:
    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], list[Path]]


STUDIES: dict[str, Study] = {}


def register(study: Study) -> Study:
    if study.name in STUDIES:
        raise ConfigError(f"study {study.name!r} is registered twice")
    STUDIES[study.name] = study
    return study


def command_line(a: argparse.Namespace) -> str:
    """The command that made a table, as typed (``ssl-bench study ...``)."""
    import shlex

    argv = getattr(a, "argv", None)
    return "ssl-bench " + " ".join(shlex.quote(x) for x in argv) if argv else f"ssl-bench study {a.study}"


def runs_dir(a: argparse.Namespace, name: str) -> Path:
    """Where a study's trained runs go: ``--runs``; else ``runs/studies/NAME`` for the default
    ``--out`` (``runs/`` is git-ignored: checkpoints are not committed with the tables); else
    ``OUT/runs/NAME``."""
    if getattr(a, "runs", None):
        return Path(a.runs)
    if str(Path(a.out)) == str(Path(DEFAULT_OUT)):
        return Path("runs") / "studies" / name
    return Path(a.out) / "runs" / name
