"""Result rows (one metric value + its provenance) and the JSONL store they are appended to.

The schema of a row (:class:`ResultRow`) and of checkpoint metadata (:class:`CheckpointMeta`)
is documented field by field in ``docs/results-schema.md``. Both carry ``schema_version``;
:func:`read_rows` upgrades older rows on read (:func:`upgrade_row`), so a row written before
versioning (no ``schema_version``: version 1) is still read, with the fields it lacks set to
``None`` (``status`` to ``"ok"``, ``eval_options`` to ``{}``).

Since schema version 3 a results file is *compact*: what the rows of one evaluation share (the
configuration, recipe, versions, commits, timing ...) is written once, in a header line
``{"record": "run", "ctx": ID, ...}``, and each row line keeps only its own fields (``run_id``,
``config_hash``, ``ctx``, ``evaluator``, ``metric``, ``value`` ...). The options, version and
seconds of each evaluator sit once in the header's ``evaluators`` table. :func:`read_rows` returns
full rows either way; :func:`compact_file` rewrites a file of full rows (any schema) compactly,
without changing what :func:`read_rows` returns.
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
RESULT_SCHEMA_VERSION = 3
#: Version of the checkpoint metadata written by the trainer. 1 = metadata without the field.
CHECKPOINT_SCHEMA_VERSION = 2


class ResultRow(TypedDict, total=False):
    """One metric value of one evaluation of one checkpoint (schema version 3)."""

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
    time_budget: float | None  # training: the time budget in seconds (config time_budget), None without one
    train_steps: int | None  # training: optimiser steps reached by the evaluated checkpoint
    train_device: str | None  # training: the hardware recorded in the checkpoint
    eval_seconds: float
    timestamp: str
    checkpoint: str  # path of the evaluated checkpoint ("" for baselines)
    # -- schema 3 --
    recipe: dict | None  # the method's options with defaults filled in + optim.lr/weight_decay (training)
    recipe_hash: str | None  # recipe_hash(): recipe, optimizer, views, backbone (None: recipe unknown)
    data_fingerprint: str | None  # embeddings.data_fingerprint of the evaluation data
    evaluator_version: str | None  # the evaluator's declared version (Evaluator.version)
    source_digest: str | None  # evaluation: provenance.source_digest() (the code that ran)
    train_source_digest: str | None  # training: the source digest recorded in the checkpoint


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


def training_hash(config: dict | None, recipe_hash: str | None = None) -> str:
    """Hash of every training key of ``config`` except the seed, and of the resolved recipe when
    its ``recipe_hash`` is known: runs that differ only in the seed share it (one leaderboard
    row); any other training difference, a changed method default included, gives another hash."""
    from .config import training_keys

    d: dict[str, Any] = {k: v for k, v in training_keys(config or {}).items() if k not in SEED_KEYS}
    if recipe_hash:
        d = {"config": d, "recipe_hash": recipe_hash}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def recipe_hash(recipe: dict | None, config: dict | None, backbone: str | None) -> str | None:
    """Digest of what a training ran with: the resolved method options and optimiser settings
    (``recipe``, as the trainer records it), the optimiser, the views and the backbone; None when
    the recipe is unknown (checkpoints and rows written before it was recorded)."""
    if not recipe:
        return None
    c = config or {}
    blob = {
        "recipe": recipe,
        "optimizer": c.get("optimizer"),
        "views": c.get("views") or {},
        "backbone": backbone,
        "backbone_kwargs": c.get("backbone_kwargs") or {},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]


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
    evaluator_version: str | None = None,
    data_fingerprint: str | None = None,
) -> list[dict]:
    """Rows of the current schema. ``eval_options``: the options the evaluator ran with;
    ``train_meta``: the checkpoint's metadata (its git commit, versions and recipe are the
    training's); ``data_fingerprint``: the evaluation data's (``embeddings.data_fingerprint``)."""
    v = provenance.versions()
    tm = train_meta or {}
    recipe = tm.get("recipe")
    rhash = recipe_hash(recipe, config, backbone)
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
        train_hash=training_hash(config, rhash),
        config=config,
        ssl_bench_version=v["ssl_bench"],
        torch_version=v["torch"],
        git_commit=provenance.git_commit(),
        versions=v,
        train_git_commit=tm.get("git_commit"),
        train_versions=tm.get("versions"),
        device=device,
        train_seconds=train_seconds,
        time_budget=(tm.get("config") or config or {}).get("time_budget"),
        train_steps=tm.get("step"),
        train_device=tm.get("hardware"),
        eval_seconds=round(eval_seconds, 4),
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        checkpoint=checkpoint,
        recipe=recipe,
        recipe_hash=rhash,
        data_fingerprint=data_fingerprint,
        evaluator_version=evaluator_version,
        source_digest=provenance.source_digest(),
        train_source_digest=tm.get("source_digest"),
    )
    return [{**base, "metric": m, "value": float(val)} for m, val in metrics.items()]


#: Fields a compact row line keeps for itself (the rest is its header's or its evaluator's).
ROW_OWN_FIELDS = ("run_id", "config_hash", "ctx", "status", "evaluator", "metric", "value")
#: Fields kept once per evaluator in the header's ``evaluators`` table.
EVALUATOR_FIELDS = ("eval_options", "evaluator_version", "eval_seconds")


def _ctx(header: dict) -> str:
    return hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode()).hexdigest()[:12]


def compact_lines(rows: Iterable[dict[str, Any]]) -> list[dict]:
    """The JSON records of ``rows`` in the compact layout: per group of rows that share every
    field but their own and their evaluator's, one header record, then one short record per row.
    A row whose evaluator fields differ from the first of its group keeps them in its own record,
    so :func:`read_rows` gives back exactly ``rows``."""
    groups: dict[str, tuple[dict, list[dict]]] = {}
    for r in rows:
        shared = {k: v for k, v in r.items() if k not in ROW_OWN_FIELDS and k not in EVALUATOR_FIELDS}
        shared.update(run_id=r.get("run_id"), config_hash=r.get("config_hash"))
        ctx = _ctx(shared)
        groups.setdefault(ctx, (shared, []))[1].append(r)
    out: list[dict] = []
    for ctx, (shared, members) in groups.items():
        evs: dict[str, dict] = {}
        for r in members:
            evs.setdefault(str(r.get("evaluator")), {k: r[k] for k in EVALUATOR_FIELDS if k in r})
        out.append({**shared, "record": "run", "ctx": ctx, "evaluators": evs})
        for r in members:
            line = {k: r[k] for k in ROW_OWN_FIELDS if k in r and k != "ctx"}
            ev = evs[str(r.get("evaluator"))]
            line.update({k: r[k] for k in EVALUATOR_FIELDS if k in r and (k not in ev or ev[k] != r[k])})
            line.update({k: None for k in EVALUATOR_FIELDS if k in ev and k not in r})
            out.append({**line, "ctx": ctx})
    return out


def _dumps(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)


def append_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows to a JSONL file in the compact layout (:func:`compact_lines`); one write,
    flushed and synced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _dumps(compact_lines(rows))
    try:
        with open(path, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:  # a full disk names no file: this one is named
        from .checkpoint import naming

        raise naming(exc, path) from exc


def row_problem(row: Any) -> str | None:
    """Why ``row`` (parsed JSON, expanded to a full row) cannot be a result row, or None: it must be
    an object with a ``run_id``, a ``config`` object (or none), and, unless its status says it
    failed, a finite number as ``value``."""
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


def _expand(rec: dict, headers: dict[str, dict]) -> dict | None:
    """A full row from a record of a results file (None for a header or an orphan record)."""
    if rec.get("record") == "run":
        headers[str(rec.get("ctx"))] = rec
        return None
    ctx = rec.get("ctx")
    if ctx is None:
        return rec  # a full row (schema < 3, or written by an older writer)
    h = headers.get(str(ctx))
    if h is None:
        return None  # its header was lost (a hand-cut file): the row cannot be told apart
    shared = {k: v for k, v in h.items() if k not in ("record", "ctx", "evaluators")}
    ev = (h.get("evaluators") or {}).get(str(rec.get("evaluator")), {})
    full = {**shared, **ev, **{k: v for k, v in rec.items() if k != "ctx"}}
    return full


def read_records(path: Path, skipped: list[str] | None = None) -> list[tuple[int, Any]]:
    """(line number, parsed JSON) of each line of one results file. A torn last line (killed
    writer) is skipped silently; a line that is not UTF-8 or not JSON is skipped and described in
    ``skipped``."""
    skipped = [] if skipped is None else skipped
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    out = []
    for i, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            skipped.append(f"line {i}: not UTF-8 text")
            continue
        if not line:
            continue
        try:
            out.append((i, json.loads(line)))
        except json.JSONDecodeError:
            if i < len(lines):
                skipped.append(f"line {i}: not JSON")
    return out


def read_rows(paths: Iterable[Path], warn: Callable[[str], None] | None = None) -> list[dict]:
    """Read result rows, full ones whatever the layout (compact or not), upgraded to the current
    schema (:func:`upgrade_row`). A torn last line (killed writer) is skipped silently; any other
    line that is not a result row (not UTF-8, not JSON, a row whose header is missing, no
    ``run_id``, a ``value`` that is not a finite number, :func:`row_problem`) is skipped and
    counted, with one warning per file naming it and the first lines (``warn``, default
    :func:`ssl_bench.errors.warn`)."""
    from .errors import warn as default_warn

    rows = []
    for p in paths:
        headers: dict[str, dict] = {}
        skipped: list[str] = []
        for i, rec in read_records(p, skipped):
            if not isinstance(rec, dict):
                skipped.append(f"line {i}: not a JSON object ({type(rec).__name__})")
                continue
            row = _expand(rec, headers)
            if row is None:
                if rec.get("record") != "run":
                    skipped.append(f"line {i}: its run record (ctx {rec.get('ctx')}) is missing")
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


def compact_file(path: Path) -> tuple[int, int]:
    """Rewrite a results file in the compact layout, atomically, and check that it reads back to
    the same rows; (bytes before, bytes after). Rows keep their values and provenance."""
    from .checkpoint import atomic_write_text
    from .errors import SSLBenchError

    path = Path(path)
    before_bytes = path.stat().st_size
    headers: dict[str, dict] = {}
    raw = [
        r for r in (_expand(rec, headers) for _, rec in read_records(path) if isinstance(rec, dict)) if r is not None
    ]
    text = _dumps(compact_lines(raw))
    back: dict[str, dict] = {}
    again = [r for r in (_expand(json.loads(x), back) for x in text.splitlines()) if r is not None]
    norm = [upgrade_row(json.loads(json.dumps(r, sort_keys=True, default=str))) for r in raw]
    if [upgrade_row(r) for r in again] != norm:
        raise SSLBenchError(f"{path}: the compact layout would not read back to the same rows; left as it was")
    if text.encode() != path.read_bytes():
        atomic_write_text(path, text)
    return before_bytes, len(text.encode())


def find_result_files(runs_dir: Path) -> list[Path]:
    return sorted(Path(runs_dir).glob("*/results.jsonl"))
