"""Names that come from data (a result row's dataset, a run id built from a config or from a
checkpoint's metadata) never become paths unchecked: :func:`safe_name` lets a plain file stem
through and refuses anything else in one line, before any file is written."""

from __future__ import annotations

import re

from .errors import SSLBenchError

#: a plain file stem: letters, digits, ``.``, ``_``, ``+``, ``=`` and ``-``, not starting with a dot
#: (so never ``.``, ``..``, a hidden file, a separator or an absolute path), at most 200 characters
#: (room for a suffix within the 255 bytes of a file name)
_STEM = re.compile(r"[A-Za-z0-9_+=-][A-Za-z0-9._+=-]{0,199}")


class UnsafeNameError(SSLBenchError):
    """A name from data would not stay one plain file name inside its folder."""


def is_safe_name(value: object) -> bool:
    return isinstance(value, str) and _STEM.fullmatch(value) is not None


def safe_name(value: object, what: str) -> str:
    """``value`` if it is a plain file stem, else :class:`UnsafeNameError`: "``what`` is <value>: not
    a plain name ..." (``what`` says where the value came from)."""
    if not isinstance(value, str) or not is_safe_name(value):
        shown = repr(value)
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        raise UnsafeNameError(
            f"{what} is {shown}: not a plain name (letters, digits, '.', '_', '+', '=', '-'; no leading "
            f"dot, no path), so no file or folder is named after it"
        )
    return value
