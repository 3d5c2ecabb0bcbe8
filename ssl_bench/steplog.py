"""The trainer's logging hook: ``train_steps.csv`` and the events experiment trackers receive.

Every ``log_every`` steps (and at the last step of each epoch) the trainer hands one row to
:meth:`StepLog.step`: ``step`` (optimiser steps done), ``epoch`` (fractional: step / steps per
epoch), ``loss`` (the loss of that step, averaged over ranks), ``lr`` and ``seconds`` (training
wall-clock seconds since the run started, across resumes). The rows go to
``<run>/train_steps.csv``, beside the per-epoch ``train_log.csv``, so that a 2-epoch run has a
loss curve of many points (``ssl-bench report``).

The file is rewritten atomically whenever the trainer writes its resume state
(:meth:`StepLog.flush`), so it always matches the state a ``--resume`` restarts from; on start,
rows after the step training restarts at are dropped (:meth:`StepLog.start`). Only the rank that
writes files (rank 0) logs. Nothing here touches the training: no random numbers, no device sync
(the trainer already holds the loss as a Python float at a log step).

``on_log(kind, record)``, when given, receives the same events as they happen, for experiment
trackers (:mod:`ssl_bench.trackers`): ``"start"`` (``run_id``, ``run_dir``, ``config``, ``step``),
``"step"`` (the row above) and ``"epoch"`` (``epoch``, ``step``, ``seconds`` and the epoch's mean
losses, with ``knn_monitor`` where the online monitor ran).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path

from .checkpoint import atomic_write_text

FILENAME = "train_steps.csv"
FIELDS = ("step", "epoch", "loss", "lr", "seconds")

OnLog = Callable[[str, dict], None]


def read_steps(path: Path) -> list[dict[str, float]]:
    """The readable rows of a ``train_steps.csv`` (numbers), in file order; a torn or foreign row
    is skipped."""
    if not Path(path).is_file():
        return []
    rows = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    try:
        for r in csv.DictReader(io.StringIO(text, newline="")):
            try:
                row = {k: float(r[k]) for k in FIELDS}
            except (KeyError, TypeError, ValueError):
                continue
            if all(math.isfinite(v) for v in row.values()):
                rows.append(row)
    except csv.Error:
        pass
    return rows


class StepLog:
    def __init__(self, run_dir: Path, enabled: bool, on_log: OnLog | None = None) -> None:
        self.path = Path(run_dir) / FILENAME
        self.enabled, self.on_log = enabled, on_log
        self.rows: list[dict[str, float]] = []
        self.dirty = False

    def start(self, step: int, info: dict) -> None:
        """Training (re)starts after ``step`` optimiser steps: rows beyond it are dropped."""
        if not self.enabled:
            return
        kept = [r for r in read_steps(self.path) if r["step"] <= step]
        self.rows, self.dirty = kept, self.path.is_file()
        self.flush()
        self._emit("start", {**info, "step": step})

    def step(self, step: int, steps_per_epoch: int, loss: float, lr: float, seconds: float) -> None:
        if not self.enabled:
            return
        row = {"step": step, "epoch": round(step / steps_per_epoch, 6), "loss": loss, "lr": lr, "seconds": seconds}
        self.rows.append({k: float(v) for k, v in row.items()})
        self.dirty = True
        self._emit("step", row)

    def epoch(self, record: dict) -> None:
        if self.enabled:
            self._emit("epoch", record)

    def flush(self) -> None:
        """Rewrite the file with every row so far (atomically), if anything changed."""
        if not (self.enabled and self.dirty):
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow({k: int(r[k]) if k == "step" else repr(r[k]) for k in FIELDS})
        atomic_write_text(self.path, buf.getvalue())
        self.dirty = False

    def _emit(self, kind: str, record: dict) -> None:
        if self.on_log is not None:
            self.on_log(kind, record)
