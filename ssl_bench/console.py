"""What a sweep says on the console: one short line per finished run (the full metrics stay in the
result rows), and the ``ssl_bench`` logger's handler that the command line installs.

Library code logs through :mod:`logging` (logger ``ssl_bench``); only the command line prints.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

#: Longest line a finished run prints (a long method label is cut, the numbers never are).
MAX_LINE = 160

logger = logging.getLogger("ssl_bench")


def _value(by_ev: dict[str, dict[str, Any]], evaluator: str, metric: str) -> float | None:
    v = by_ev.get(evaluator, {}).get(metric)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(float(v)) else None


def run_line(name: str, seed: int, what: str, train_s: float, total_s: float, by_ev: dict[str, dict[str, Any]]) -> str:
    """``[simclr seed 0] trained 12s: k-NN 84.50, linear 85.99, collapse ok (15s with eval)``:
    the headline of one finished run from its metrics ``{evaluator: {metric: value}}``, at most
    :data:`MAX_LINE` characters. Evaluators that did not run are left out of the line."""
    parts = []
    for label, ev, metric in (("k-NN", "knn", "top1"), ("linear", "linear", "top1")):
        v = _value(by_ev, ev, metric)
        if v is not None:
            parts.append(f"{label} {v:.2f}")
    code = _value(by_ev, "collapse", "verdict_code")
    if code is not None:
        from .evaluator import metric_word

        parts.append(f"collapse {metric_word('collapse', 'verdict_code', code) or code}")
    tail = f"{what} {train_s:.0f}s: {', '.join(parts) or 'no headline metric'} ({total_s:.0f}s with eval)"
    head = f"[{name} seed {seed}] "
    if len(head) + len(tail) > MAX_LINE:
        keep = max(8, MAX_LINE - len(tail) - len(f" seed {seed}] ") - 4)
        head = f"[{name[:keep]}... seed {seed}] "
    return head + tail


def failure_line(name: str, seed: int, status: str, reason: str) -> str:
    """``[byol seed 1] DIVERGED: <reason>``, the reason cut to fit :data:`MAX_LINE`."""
    line = f"[{name} seed {seed}] {status.upper()}: {reason}"
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


class _TqdmHandler(logging.Handler):
    """Writes records to stdout through ``tqdm.write``, which keeps progress bars below the text."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stdout)
            sys.stdout.flush()
        except Exception:  # logging must never break a run
            self.handleError(record)


def configure(quiet: bool = False) -> None:
    """The command line's handler of the ``ssl_bench`` logger: INFO messages as plain lines on
    stdout (WARNING and above only with ``quiet``). Called once per command; replaces its own
    handler from an earlier call."""
    for h in list(logger.handlers):
        if isinstance(h, _TqdmHandler):
            logger.removeHandler(h)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
