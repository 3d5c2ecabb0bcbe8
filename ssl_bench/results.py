"""Result rows (one metric value + its provenance) and the JSONL store they are appended to.

The schema of a row (:class:`ResultRow`) and of checkpoint metadata (:class:`CheckpointMeta`)
is documented field by field in ``docs/results-schema.md``. Both carry ``schema_version``;
:func:`read_rows` upgrades older rows on read (:func:`upgrade_row`), so a row written before
versioning (no ``schema_version``: version 1) is still read, with the fields it lacks set to
``None`` (``status`` to ``"ok"``, ``eval_options`` to ``{}``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypedDict

from . import provenance

#: Version of the result-row schema written by :func:`make_rows`. 1 = rows without the field.
RESULT_SCHEMA_VERSION = 2
#: Version of the checkpoint metadata written by the trainer. 1 = metadata without the field.
CHECKPOINT_SCHEMA_VERSION = 2


class ResultRow(TypedDict, total=False):
    """One metric value of one evaluation of one checkpoint (schema version 2)."""

    schema_version: int  # RESULT_SCHEMA_VERSION; absent in version-1 rows
    status: str  # "ok"; failure rows of a sweep say e.g. "diverged" / "failed" (no value)
    run_id: str  # <dataset>-<method>-<backbone>-<preset>-s<seed>-<config hash>
    method: str
    dataset: str
    backbone: str  # "-" for the pixels baseline
    preset: str
    epochs: int  # the epoch of the evaluated checkpoint (0 for baselines)
    seed: int
    evaluator: str  # registry name
    metric: str  # key in the evaluator's result dict
    value: float | None
    eval_options: dict  # every option the evaluator ran with (defaults filled in)
    config_hash: str  # RunConfig.hash() of the trained configuration (includes the seed)
    train_hash: str  # training_hash(config): the same without the seed (leaderboard row identity)
    config: dict  # the full RunConfig as trained
    ssl_bench_version: str  # evaluation: ssl_bench version
    torch_version: str  # evaluation: torch version
    git_commit: str  # evaluation: git commit of ssl-bench ("-dirty" suffix for local changes)
    versions: dict  # evaluation: ssl_bench, torch, python, torchvision versions
    train_git_commit: str | None  # training: git commit recorded in the checkpoint (None for baselines)
    train_versions: dict | None  # training: versions recorded in the checkpoint
    device: str  # evaluation hardware
    train_seconds: float | None
    eval_seconds: float
    timestamp: str
    checkpoint: str  # path of the evaluated checkpoint ("" for baselines)


class CheckpointMeta(TypedDict, total=False):
    """JSON metadata stored in every checkpoint (``epoch_NNNN.safetensors`` and ``.json``)."""

    schema_version: int  # CHECKPOINT_SCHEMA_VERSION; absent in version-1 checkpoints
    method: str
    dataset: str
    backbone: str  # resolved backbone name
    epoch: int  # epochs completed when this checkpoint was written
    epochs: int  # epochs configured
    step: int
    config: dict  # RunConfig.to_dict() after the preset is applied
    config_hash: str
    kind: str  # "image" | "vector"
    input_shape: list
    out_dim: int
    train_seconds: float
    versions: dict  # training: ssl_bench, torch, python, torchvision
    git_commit: str  # training: git commit
    hardware: str
    run_id: str
    world_size: int
    precision: str  # the resolved training precision (fp32 | bf16)


#: Fields every row of the current schema has (make_rows writes all of them).
ROW_FIELDS = list(ResultRow.__annotations__)
#: Config keys left out of a leaderboard row's identity, on top of NON_TRAINING_KEYS: the seed.
SEED_KEYS = {"seed"}


def training_hash(config: dict | None) -> str:
    """Hash of every training key of ``config`` except the seed: runs that differ only in the
    seed share it (one leaderboard row), any other training difference gives another hash."""
    from .config import NON_TRAINING_KEYS

    d = {k: v for k, v in (config or {}).items() if k not in NON_TRAINING_KEYS and k not in SEED_KEYS}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def upgrade_row(row: dict) -> dict:
    """A row of any schema version as a current-schema row (missing fields filled, never removed)."""
    r = dict(row)
    r.setdefault("schema_version", 1)
    r.setdefault("status", "ok")
    r.setdefault("eval_options", {})
    if not r.get("train_hash"):
        r["train_hash"] = training_hash(r.get("config")) if r.get("config") else r.get("config_hash")
    for k in ROW_FIELDS:
        r.setdefault(k, None)
    return r


def checkpoint_meta(meta: dict) -> CheckpointMeta:
    """Checkpoint metadata of any version, with ``schema_version`` filled (1 when absent)."""
    m = dict(meta)
    m.setdefault("schema_version", 1)
    return m  # type: ignore[return-value]


def make_rows(
    metrics: dict[str, float],
    *,
    evaluator: str,
    run_id: str,
    method: str,
    dataset: str,
    backbone: str,
    preset: str,
    epochs: int,
    seed: int,
    config_hash: str,
    config: dict | None,
    device: str,
    train_seconds: float | None,
    eval_seconds: float,
    checkpoint: str = "",
    eval_options: dict | None = None,
    train_meta: dict | None = None,
) -> list[dict]:
    """Rows of the current schema. ``eval_options``: the options the evaluator ran with;
    ``train_meta``: the checkpoint's metadata (its git commit and versions are the training's)."""
    v = provenance.versions()
    tm = train_meta or {}
    base = dict(
        schema_version=RESULT_SCHEMA_VERSION,
        status="ok",
        run_id=run_id,
        method=method,
        dataset=dataset,
        backbone=backbone,
        preset=preset,
        epochs=epochs,
        seed=seed,
        evaluator=evaluator,
        eval_options=dict(eval_options or {}),
        config_hash=config_hash,
        train_hash=training_hash(config),
        config=config,
        ssl_bench_version=v["ssl_bench"],
        torch_version=v["torch"],
        git_commit=provenance.git_commit(),
        versions=v,
        train_git_commit=tm.get("git_commit"),
        train_versions=tm.get("versions"),
        device=device,
        train_seconds=train_seconds,
        eval_seconds=round(eval_seconds, 4),
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        checkpoint=checkpoint,
    )
    return [{**base, "metric": m, "value": float(val)} for m, val in metrics.items()]


def append_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows to a JSONL file; each write is one line, flushed and synced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows)
    try:
        with open(path, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:  # a full disk names no file: this one is named
        from .checkpoint import naming

        raise naming(exc, path) from exc


def row_problem(row: Any) -> str | None:
    """Why ``row`` (parsed JSON) cannot be a result row, or None: it must be an object with a
    ``run_id``, a ``config`` object (or none), and, unless its status says it failed, a finite
    number as ``value``."""
    import math

    if not isinstance(row, dict):
        return f"not a JSON object ({type(row).__name__})"
    if not isinstance(row.get("run_id"), str) or not row["run_id"]:
        return "no run_id"
    if row.get("config") is not None and not isinstance(row["config"], dict):
        return f"'config' is a {type(row['config']).__name__}, not an object"
    v = row.get("value")
    if row.get("status", "ok") == "ok" and (
        isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
    ):
        return f"'value' is {v!r}, not a finite number"
    return None


def read_rows(paths: Iterable[Path], warn: Callable[[str], None] | None = None) -> list[dict]:
    """Read result rows (upgraded to the current schema, :func:`upgrade_row`). A torn last line
    (killed writer) is skipped silently; any other line that is not a result row (not UTF-8, not
    JSON, no ``run_id``, a ``value`` that is not a finite number, :func:`row_problem`) is skipped
    and counted, with one warning per file naming it and the first lines (``warn``, default
    :func:`ssl_bench.errors.warn`)."""
    from .errors import warn as default_warn

    rows = []
    for p in paths:
        with open(p, "rb") as f:
            lines = f.read().splitlines()
        skipped: list[str] = []
        for i, raw in enumerate(lines, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                skipped.append(f"line {i}: not UTF-8 text")
                continue
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if i < len(lines):
                    skipped.append(f"line {i}: not JSON")
                continue
            why = row_problem(row)
            if why:
                skipped.append(f"line {i}: {why}")
                continue
            rows.append(upgrade_row(row))
        if skipped:
            more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
            (warn or default_warn)(
                f"{p}: skipped {len(skipped)} line(s) that are not result rows ({'; '.join(skipped[:3])}{more})"
            )
    return rows


def find_result_files(runs_dir: Path) -> list[Path]:
    return sorted(Path(runs_dir).glob("*/results.jsonl"))
