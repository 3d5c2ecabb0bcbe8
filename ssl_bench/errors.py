"""Exceptions with messages meant for users: the CLI prints them on one line and exits 2."""


class SSLBenchError(Exception):
    """Base class: anything the user can fix (bad name, bad config, missing data...)."""


class UnknownNameError(SSLBenchError, KeyError):
    """A registry lookup failed; the message lists the names that exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ConfigError(SSLBenchError, ValueError):
    """A malformed or inconsistent configuration."""


class DatasetNotFoundError(SSLBenchError, FileNotFoundError):
    """The files of a dataset are not on disk; the message says how to get them."""


class CheckpointError(SSLBenchError):
    """A checkpoint is missing, truncated, corrupt or from an incompatible run."""


class TrainingDivergedError(SSLBenchError, FloatingPointError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


def warn(msg: str) -> None:
    """One line on stderr, ``ssl-bench: warning: ...``: something was skipped and the command goes on."""
    import sys

    print(f"ssl-bench: warning: {' '.join(str(msg).split())}", file=sys.stderr, flush=True)


def not_a_file(what: str, path: object) -> str:
    """``"<what> <path> is a directory, not a file"`` or ``"... does not exist"``: the message for a
    path that ``is_file()`` refused, true for both cases."""
    from pathlib import Path

    p = Path(str(path))
    return f"{what} {p} is a directory, not a file" if p.is_dir() else f"{what} {p} does not exist"


class RunsFailed(SSLBenchError):
    """The command finished, but some of its runs failed or diverged: exit status 1, not 2 (a
    usage or configuration error), so a script can tell a typo from a scientific failure."""

    exit_code = 1
