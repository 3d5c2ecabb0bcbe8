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


class RunsFailed(SSLBenchError):
    """The command finished, but some of its runs failed or diverged: exit status 1, not 2 (a
    usage or configuration error), so a script can tell a typo from a scientific failure."""

    exit_code = 1
