"""Result rows (one metric value + its provenance) and the JSONL store they are appended to."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

from . import provenance

ROW_FIELDS = [
    "run_id", "method", "dataset", "backbone", "preset", "epochs", "seed", "evaluator", "metric", "value",
    "config_hash", "config", "ssl_bench_version", "torch_version", "git_commit", "device", "train_seconds",
    "eval_seconds", "timestamp", "checkpoint",
]


def make_rows(metrics: dict[str, float], *, evaluator: str, run_id: str, method: str, dataset: str,
              backbone: str, preset: str, epochs: int, seed: int, config_hash: str, config: dict | None,
              device: str, train_seconds: float | None, eval_seconds: float, checkpoint: str = "") -> list[dict]:
    v = provenance.versions()
    base = dict(run_id=run_id, method=method, dataset=dataset, backbone=backbone, preset=preset, epochs=epochs,
                seed=seed, evaluator=evaluator, config_hash=config_hash, config=config,
                ssl_bench_version=v["ssl_bench"], torch_version=v["torch"], git_commit=provenance.git_commit(),
                device=device, train_seconds=train_seconds, eval_seconds=round(eval_seconds, 4),
                timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"), checkpoint=checkpoint)
    return [{**base, "metric": m, "value": float(val)} for m, val in metrics.items()]


def append_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows to a JSONL file; each write is one line, flushed and synced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows)
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_rows(paths: Iterable[Path]) -> list[dict]:
    """Read result rows; a torn last line (killed writer) is skipped, not fatal."""
    rows = []
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows


def find_result_files(runs_dir: Path) -> list[Path]:
    return sorted(Path(runs_dir).glob("*/results.jsonl"))
