"""Studies from the literature as commands: ``ssl-bench study NAME``.

A study checks one published claim end to end with ssl-bench's own machinery (the sweep, the
trainer, the evaluators) and writes a table (``NAME.csv`` and ``NAME.md``) and figures (PNG)
under ``--out`` (default ``leaderboards/studies/``). Each study has a ``--budget``: ``tiny`` (the
tests and CI, seconds) and ``default`` (the committed tables, minutes on 2 CPU cores). The studies
and their measured results: ``docs/studies.md``.

A study is a :class:`Study`: a name, a one-line help, ``add_arguments(parser)`` for its own flags
and ``run(args) -> list[Path]`` (the files written). :func:`register` adds one to :data:`STUDIES`.
"""

from __future__ import annotations

from ..errors import ConfigError
from . import littwin, mog, rankme_selection, vicreg_ablation  # noqa: F401  (each registers itself)
from .base import BUDGETS, DEFAULT_OUT, STUDIES, Study, register

__all__ = ["BUDGETS", "DEFAULT_OUT", "STUDIES", "Study", "register", "names", "get"]


def names() -> list[str]:
    return sorted(STUDIES)


def get(name: str) -> Study:
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; studies: {', '.join(sorted(STUDIES))}")
    return STUDIES[name]
