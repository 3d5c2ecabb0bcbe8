"""Glue for the one-way data flow: checkpoint -> embeddings (cached) -> evaluators -> rows."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TYPE_CHECKING, overload

import torch

from . import precision as precision_mod
from . import provenance, threads
from .backbones import build_backbone, default_backbone
from .bn_calibration import recalibrate_batchnorm
from .build import backbone_choice, load_data, resolve_device, seed_everything
from .checkpoint import artifact_dir
from .config import RunConfig
from .console import failure_line, run_line
from .data import Data
from .embeddings import Embeddings, checkpoint_embeddings, data_fingerprint, embed_data, eval_split, pixel_embeddings
from .errors import RunsFailed, SSLBenchError, TrainingDivergedError
from .kinds import DataKind
from .method import Method
from .registry import EVALUATORS
from .results import append_rows, make_rows
from .stats import small_work_threads
from .trainer import train

if TYPE_CHECKING:
    from tqdm import tqdm


def eval_options(preset: str, *kwargs: dict | None) -> dict[str, dict]:
    """Evaluator options: the budgets each evaluator declares for ``preset``
    (``Evaluator.preset_options``; ``quick`` uses the defaults), then each ``kwargs`` in turn
    ({evaluator: {option: value}}), which win."""
    out: dict[str, dict] = {}
    for name in EVALUATORS.names():
        budget = getattr(EVALUATORS.get(name), "preset_options", {}).get(preset)
        if budget:
            out[name] = dict(budget)
    for kw in kwargs:
        for ev, opts in (kw or {}).items():
            out.setdefault(ev, {}).update(opts)
    return out


class NonFiniteEmbeddingsError(SSLBenchError):
    """Embeddings hold NaN/inf (or absurdly large values): no evaluator judges them."""


class ResultsNotSavedError(SSLBenchError):
    """Rows were computed but could not be appended to results.jsonl; ``rows`` holds them and the
    message says where they were saved instead (if anywhere)."""

    def __init__(self, msg: str, rows: list[dict], saved_to: Path | None) -> None:
        super().__init__(msg)
        self.rows, self.saved_to = rows, saved_to


class SweepFailed(RunsFailed):
    """Some (method, seed) runs of a sweep failed; the others were evaluated and ranked (exit 1)."""

    def __init__(self, failures: list[dict], all_failed: bool = False, written: bool = True) -> None:
        self.failures = failures
        what = "; ".join(f"{f['method']} seed {f['seed']} {f['status']}" for f in failures)
        if not written:
            others = "no run succeeded, so no leaderboard was written"
        elif all_failed:
            others = "no run succeeded: the leaderboard shows only the reference rows and the failures"
        else:
            others = "the leaderboard has the others"
        super().__init__(
            f"{len(failures)} run(s) of the sweep failed ({what}); {others}, "
            f"the reasons are in each run's results.jsonl and above"
        )


#: Embeddings beyond this magnitude are treated as broken (float32 products overflow near 1e19).
MAX_ABS_EMBEDDING = 1e15


def check_embeddings(emb: Embeddings) -> None:
    """Refuse embeddings no evaluator can judge honestly: non-finite, complex or absurdly large."""
    import numpy as np

    from . import ondisk

    for split in ("train_x", "test_x"):
        x = getattr(emb, split)
        if np.iscomplexobj(x):
            raise NonFiniteEmbeddingsError(
                f"{emb.source or 'embeddings'}: {split} is complex; evaluators need real embeddings"
            )
        if ondisk.is_on_disk(x):  # chunk by chunk: the file is never read whole into memory
            bad, peak = 0, 0.0
            for _, rows in ondisk.chunks(x):
                fin = np.isfinite(rows)
                bad += int(rows.size - fin.sum())
                peak = max(peak, float(np.abs(np.where(fin, rows, 0)).max()) if rows.size else 0.0)
        else:
            bad = int(x.size - np.isfinite(x).sum())
            peak = float(np.abs(x).max()) if x.size and not bad else 0.0
        if bad:
            raise NonFiniteEmbeddingsError(
                f"{emb.source or 'embeddings'}: {split} holds {bad} NaN/inf value(s) of {x.size} (non-finite "
                f"weights? a diverged run?); no evaluator was run and no numbers were written"
            )
        if peak > MAX_ABS_EMBEDDING:
            raise NonFiniteEmbeddingsError(
                f"{emb.source or 'embeddings'}: {split} holds values up to {peak:.3g} (> {MAX_ABS_EMBEDDING:g}); "
                f"float32 statistics overflow there, so no evaluator was run"
            )


def run_evaluators(
    emb: Embeddings,
    names: list[str],
    eval_kwargs: dict | None = None,
    model: Method | None = None,
    data: Data | None = None,
    device: torch.device | None = None,
    artifact_dir: Path | None = None,
    artifact_prefix: str = "",
    precision: str = "fp32",
) -> dict[str, tuple[dict, float]]:
    """{evaluator: (metrics, seconds)} for each name; evaluator options from ``eval_kwargs``.

    Model evaluators (``needs_model``) get ``model`` (a Method in eval mode), the evaluation
    ``data`` and ``device``; without a model (the ``pixels`` baseline, bare embeddings) they are
    skipped and give no entry; they run the model under ``precision`` (resolved, see
    :mod:`ssl_bench.precision`: the one the model was trained with). Evaluators that write files
    write them under ``artifact_dir``.
    """
    check_embeddings(emb)
    evs = []
    for name in names:  # every evaluator's options are checked before the first one runs
        evs.append((name, EVALUATORS.get(name)(**(eval_kwargs or {}).get(name, {}))))
    out = {}
    # vector data (small MLPs, a few thousand points) on the CPU: one thread, as in training
    # (ssl_bench.trainer): more threads only wait for each other on work this small
    one = data is not None and data.kind == DataKind.VECTOR and (device is None or torch.device(device).type == "cpu")
    with small_work_threads(0 if one else float("inf")):
        for name, ev in evs:
            ev.artifact_dir, ev.artifact_prefix, ev.precision = artifact_dir, artifact_prefix, precision
            if ev.needs_model and model is None:
                continue
            threads.adapt()
            t0 = time.perf_counter()
            if ev.needs_model:
                metrics = ev.run_model(model, data, device or torch.device("cpu"))
            else:
                metrics = ev(emb)
            out[name] = (metrics, time.perf_counter() - t0)
    return out


def evaluation_data_config(cfg: RunConfig, dataset: str | None = None, data_root: str | None = None) -> RunConfig:
    """The config that says which data a checkpoint is evaluated on. A checkpoint's metadata is
    data from a file, not an instruction: its dataset is used only when it names a registered
    dataset (or the caller names one), and its data root is never used, so a run bundle cannot
    point ssl-bench at a folder of its choosing. The root comes from ``data_root``, else
    ``$SSL_BENCH_DATA``, else the dataset's default location."""
    from .registry import DATASETS

    name = dataset or cfg.dataset
    if not isinstance(name, str) or name not in DATASETS.names():
        DATASETS.get(str(name))  # raises the one-line "unknown dataset ... (have: ...)" error
    return dataclasses.replace(cfg, dataset=name, data_root=data_root)


def evaluate_checkpoint(
    ckpt: Path,
    evaluators: list[str] | None = None,
    eval_kwargs: dict | None = None,
    device: str = "auto",
    data: Data | None = None,
    results: Path | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
) -> list[dict]:
    """Evaluate a checkpoint and append the rows to its run's ``results.jsonl``. The data is
    ``data`` if given, else ``dataset`` (default: the checkpoint's, validated against the registry)
    under ``data_root`` (never the checkpoint's recorded root)."""
    ckpt = Path(ckpt)
    dev = resolve_device(device)
    from .checkpoint import run_lock
    from .embeddings import load_method_from_checkpoint

    # the checkpoint is read once (fail fast, one clear line, on a damaged file): the rebuilt method
    # serves the embeddings and the model evaluators
    loaded = load_method_from_checkpoint(ckpt, dev)
    cfg = loaded[1].with_preset()
    names = EVALUATORS.resolve(evaluators or cfg.evaluators)
    results_path = Path(results) if results else ckpt.parent.parent / "results.jsonl"
    _check_writable(results_path)
    with run_lock(ckpt.parent.parent, "evaluate"):
        return _evaluate_locked(ckpt, loaded, cfg, names, eval_kwargs, dev, data, results_path, dataset, data_root)


def _check_writable(results_path: Path) -> None:
    """Fail before any work when the results file cannot take rows (a directory, a read-only file,
    a read-only or missing-and-uncreatable folder): an evaluation is never computed to be lost."""
    import os

    from .errors import CheckpointError

    if results_path.is_dir():
        raise CheckpointError(f"{results_path} is a directory, not a results file: move it away")
    if results_path.exists() and not os.access(results_path, os.W_OK):
        raise CheckpointError(f"{results_path} is read-only: results could not be saved, so nothing was evaluated")
    parent = results_path.parent
    if parent.exists() and not parent.is_dir():
        raise CheckpointError(f"{parent} is a file, not a folder")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise CheckpointError(f"{parent} is read-only: results could not be saved, so nothing was evaluated")


def save_rows(path: Path, rows: list[dict]) -> None:
    """``append_rows``, and when that fails (disk full, permissions changed meanwhile) the rows
    are written to a fallback file whose name the one-line error gives: nothing computed is lost."""
    import json
    import os
    import tempfile

    try:
        append_rows(path, rows)
        return
    except OSError as exc:
        why = f"{exc.strerror or type(exc).__name__}"
    for d in (Path(os.environ.get("SSL_BENCH_RESCUE_DIR", tempfile.gettempdir())), Path.home(), Path.cwd()):
        try:
            fd, tmp = tempfile.mkstemp(prefix="ssl-bench-unsaved-", suffix=".jsonl", dir=d)
            with os.fdopen(fd, "w") as f:
                f.write("".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows))
            raise ResultsNotSavedError(
                f"could not append {len(rows)} result row(s) to {path} ({why}); they were "
                f"saved to {tmp}: append that file to {path} once the fault is fixed",
                rows,
                Path(tmp),
            )
        except OSError:
            continue
    raise ResultsNotSavedError(
        f"could not append {len(rows)} result row(s) to {path} ({why}) nor save them anywhere else", rows, None
    )


def _evaluate_locked(
    ckpt: Path,
    loaded: tuple[Method, RunConfig, dict[str, Any]],
    cfg: RunConfig,
    names: list[str],
    eval_kwargs: dict | None,
    dev: torch.device,
    data: Data | None,
    results_path: Path,
    dataset: str | None,
    data_root: str | None,
) -> list[dict]:
    full = data if data is not None else load_data(evaluation_data_config(cfg, dataset, data_root))
    ev_data = eval_split(cfg, full)
    emb, cfg, meta, _cached, method = checkpoint_embeddings(ckpt, ev_data, dev, loaded=loaded)
    model = method if any(EVALUATORS.get(n).needs_model for n in names) else None
    rows = []
    fingerprint = data_fingerprint(ev_data)
    options = eval_options(cfg.preset, cfg.eval_kwargs, eval_kwargs)
    results_ev = run_evaluators(
        emb,
        names,
        options,
        model=model,
        data=ev_data,
        device=dev,
        artifact_dir=artifact_dir(ckpt),
        artifact_prefix=f"{ckpt.stem}-",
        precision=precision_mod.resolve_precision(cfg.precision, dev),
    )
    for name, (metrics, secs) in results_ev.items():
        rows += make_rows(
            metrics,
            evaluator=name,
            run_id=meta["run_id"],
            method=cfg.method,
            dataset=cfg.dataset,
            backbone=meta["backbone"],
            preset=cfg.preset,
            epochs=int(meta["epoch"]),
            seed=cfg.seed,
            config_hash=meta["config_hash"],
            config=meta["config"],
            device=provenance.hardware(dev),
            train_seconds=meta.get("train_seconds"),
            eval_seconds=secs,
            checkpoint=str(ckpt),
            eval_options=EVALUATORS.get(name).resolved_options(options.get(name)),
            train_meta=meta,
            evaluator_version=EVALUATORS.get(name).version,
            data_fingerprint=fingerprint,
        )
    save_rows(results_path, rows)
    return rows


def baseline_backbones(cfg: RunConfig, kind: str, methods: list[str] | None = None) -> list[tuple[str, dict]]:
    """The backbones random-init is measured with: the data's default (or the configured one) plus
    every other backbone a method of the sweep trains (e.g. the ViT of ijepa/mae), in order."""
    choices = [
        backbone_choice(cfg, kind)
        if cfg.backbone not in ("auto", "")
        else (default_backbone(kind), dict(cfg.backbone_kwargs))
    ]
    for m in methods or []:
        c = backbone_choice(dataclasses.replace(cfg, method=m), kind)
        if c not in choices:
            choices.append(c)
    return choices


def evaluate_baselines(
    cfg: RunConfig, out: Path, data: Data, evaluators: list[str], methods: list[str] | None = None
) -> list[dict]:
    """The reference rows: ``pixels`` (raw input) and ``random-init`` (untrained backbone), the
    latter once per backbone the sweep's ``methods`` train, so every SSL row has its own. The
    untrained backbone's BN statistics are first re-estimated on the training images
    (:mod:`ssl_bench.bn_calibration`); its rows then carry ``method_kwargs={"bn_stats": "train"}``."""
    cfg = cfg.with_preset()
    evaluators = EVALUATORS.resolve(evaluators)
    dev = resolve_device(cfg.device)
    ev_data = eval_split(cfg, data)
    fingerprint = data_fingerprint(ev_data)
    prec = precision_mod.resolve_precision(cfg.precision, dev)
    rows = []
    jobs: list[tuple[str, str, dict]] = [("pixels", "-", {})]  # (name, backbone, its kwargs); pixels: none
    jobs += [("random-init", bb, kw) for bb, kw in baseline_backbones(cfg, data.kind, methods)]
    for name, bb, bb_kwargs in jobs:
        model, calibrated = None, False  # pixels: no model, so model evaluators (lidar, reconstruction) are skipped
        if name == "pixels":
            emb, backbone = pixel_embeddings(ev_data), bb
        else:
            seed_everything(cfg.seed)  # the same initial weights the SSL methods start from
            net = build_backbone(bb, data.input_shape, data.kind, **bb_kwargs).to(dev).eval()
            net = precision_mod.model_to_layout(net, precision_mod.wants_channels_last(data.kind, data.input_shape))
            calibrated = recalibrate_batchnorm(net, ev_data, dev) > 0  # BN statistics of the training images
            emb = embed_data(net, ev_data, dev, source="random-init", precision=prec)
            backbone = bb
            model = Method(net).to(dev).eval()  # encode = the untrained backbone
        kw = {"bn_stats": "train"} if name == "random-init" and calibrated else {}
        bcfg = dataclasses.replace(cfg, method=name, method_kwargs=kw)
        bb_tag = "" if backbone == "-" else "-" + backbone.replace(":", "-").replace("/", "-")
        run_id = f"{cfg.dataset}-{name}{bb_tag}-{cfg.preset}-s{cfg.seed}"
        options = eval_options(cfg.preset, cfg.eval_kwargs)
        results_ev = run_evaluators(
            emb,
            evaluators,
            options,
            model=model,
            data=ev_data,
            device=dev,
            artifact_dir=Path(out) / run_id / "artifacts",
            precision=prec,
        )
        for ev, (metrics, secs) in results_ev.items():
            rows += make_rows(
                metrics,
                evaluator=ev,
                run_id=run_id,
                method=name,
                dataset=cfg.dataset,
                backbone=backbone,
                preset=cfg.preset,
                epochs=0,
                seed=cfg.seed,
                config_hash=bcfg.hash(),
                config=bcfg.to_dict(),
                device=provenance.hardware(dev),
                train_seconds=0.0,
                eval_seconds=secs,
                eval_options=EVALUATORS.get(ev).resolved_options(options.get(ev)),
                evaluator_version=EVALUATORS.get(ev).version,
                data_fingerprint=fingerprint,
            )
        save_rows(Path(out) / run_id / "results.jsonl", [r for r in rows if r["run_id"] == run_id])
    return rows


#: Failures that belong to one (method, seed) run: recorded, and the sweep goes on. File-system
#: faults (OSError) and interrupts are not among them: they stop the sweep.
def _run_failure(exc: BaseException) -> str | None:
    import numpy as np

    if isinstance(exc, TrainingDivergedError):
        return "diverged"
    if isinstance(exc, (ResultsNotSavedError, OSError)):
        return None
    if isinstance(
        exc,
        (
            SSLBenchError,
            RuntimeError,
            ValueError,
            TypeError,
            ArithmeticError,
            IndexError,
            KeyError,
            AssertionError,
            NotImplementedError,
            np.linalg.LinAlgError,
            MemoryError,
        ),
    ):
        return "failed"
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if not isinstance(exc, SSLBenchError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:500]


def _recipe_or_none(cfg: RunConfig) -> dict | None:
    """The recipe the failed run was to train with (its row then shares the configuration's
    identity with the successful seeds); None when the options themselves are what failed."""
    from .recipe import resolved_recipe

    try:
        return resolved_recipe(cfg)
    except SSLBenchError:
        return None


def failure_row(cfg: RunConfig, out: Path, kind: str, status: str, reason: str) -> dict:
    """The result row of a (method, seed) run that diverged or failed: no numbers, a status and a
    one-line reason (value is null). The config is stored as trained, after the preset (as the
    trainer names the run and as its ok seeds store it): the same run folder, the same row."""
    cfg = cfg.with_preset()
    bb = backbone_choice(cfg, kind)[0]
    epochs = cfg.epochs
    assert epochs is not None  # every preset sets it
    row = make_rows(
        {"status": 0.0},
        evaluator="-",
        run_id=cfg.run_id(bb),
        method=cfg.method,
        dataset=cfg.dataset,
        backbone=bb,
        preset=cfg.preset,
        epochs=int(epochs),
        seed=cfg.seed,
        config_hash=cfg.hash(),
        config=cfg.to_dict(),
        device=str(cfg.device),
        train_seconds=None,
        eval_seconds=0.0,
        train_meta={"recipe": _recipe_or_none(cfg)},
    )[0]
    row.update(value=None, status=status, reason=reason)
    return row


@overload
def run_sweep(
    methods: list[str],
    base: RunConfig,
    seeds: list[int],
    out: Path,
    baselines: bool = ...,
    log: Callable[[str], None] | None = ...,
    method_opts: dict[str, dict] | None = ...,
    return_failures: Literal[False] = ...,
    data: Data | None = ...,
    log_to: list[str] | None = ...,
) -> list[dict]: ...
@overload
def run_sweep(
    methods: list[str],
    base: RunConfig,
    seeds: list[int],
    out: Path,
    baselines: bool = ...,
    log: Callable[[str], None] | None = ...,
    method_opts: dict[str, dict] | None = ...,
    *,
    return_failures: Literal[True],
    data: Data | None = ...,
    log_to: list[str] | None = ...,
) -> tuple[list[dict], list[dict]]: ...
def run_sweep(
    methods: list[str],
    base: RunConfig,
    seeds: list[int],
    out: Path,
    baselines: bool = True,
    log: Callable[[str], None] | None = None,
    method_opts: dict[str, dict] | None = None,
    return_failures: bool = False,
    data: Data | None = None,
    log_to: list[str] | None = None,
) -> list[dict] | tuple[list[dict], list[dict]]:
    """Train (or resume) and evaluate every method x seed, plus the baselines per seed.

    A run that diverges or fails for a reason of its own (bad option, NaN weights, an error in the
    method) gets one result row with ``status`` ``diverged``/``failed`` and a one-line ``reason``
    in its ``results.jsonl``, and the sweep goes on; file-system faults stop it. ``method_opts``
    ({method: {option: value}}) adds method options per method; ``data``, the loaded dataset of
    ``base`` (loaded here when None). ``log_to``: experiment trackers each run logs to
    (:mod:`ssl_bench.trackers`). Returns the rows, or ``(rows, failures)`` with ``return_failures``.
    """
    out = Path(out)
    data = data if data is not None else load_data(base)
    evaluators = EVALUATORS.resolve(base.evaluators)
    bar = sweep_progress(
        len(methods) * len(seeds),
        f"{base.dataset} {len(methods)} method"
        f"{'s' if len(methods) > 1 else ''} x {len(seeds)} seed{'s' if len(seeds) > 1 else ''}",
        base.progress,
    )
    if log is None:  # the `ssl_bench` logger; the CLI's handler writes through tqdm.write, below the bars
        from .console import logger

        log = logger.info
    rows: list[dict] = []
    failures: list[dict] = []
    try:
        _sweep(methods, base, seeds, out, baselines, log, method_opts, data, evaluators, bar, rows, failures, log_to)
        bar.set_postfix_str("done")
    finally:
        bar.close()
    return (rows, failures) if return_failures else rows


def sweep_progress(total: int, desc: str, enabled: bool) -> tqdm:
    """The sweep's overall bar: one step per (method, seed), the elapsed time and the ETA (runs
    left x elapsed time / runs finished; ``?`` until one has finished), the current run as postfix.
    The trainer's per-epoch bar opens below it. Off when not ``enabled`` (``--no-progress``,
    ``progress: false``) and when stderr is not a terminal (tqdm's ``disable=None``)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="run",
        leave=True,
        smoothing=0,
        dynamic_ncols=True,
        disable=None if enabled else True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} runs "
        "[{elapsed} elapsed, ETA {remaining}{postfix}]",
    )


def _sweep(
    methods: list[str],
    base: RunConfig,
    seeds: list[int],
    out: Path,
    baselines: bool,
    log: Callable[[str], None],
    method_opts: dict[str, dict] | None,
    data: Data,
    evaluators: list[str],
    bar: tqdm,
    rows: list[dict],
    failures: list[dict],
    log_to: list[str] | None = None,
) -> None:
    from .checkpoint import RunLockedError
    from .trackers import TrackerSession

    for seed in seeds:
        if baselines:
            seed_cfg = dataclasses.replace(base, seed=seed)
            bar.set_postfix_str(f"baselines seed {seed}")
            log(f"[baselines] {base.dataset} seed {seed}: pixels, random-init")
            rows += evaluate_baselines(seed_cfg, out, data, evaluators, methods)
        for m in methods:
            t0 = time.perf_counter()
            cfg: RunConfig | None = None
            bar.set_postfix_str(f"{m} seed {seed}")
            tracked = TrackerSession(log_to or [], out)  # opens when the run starts
            try:
                kw = {**base.method_kwargs, **(method_opts or {}).get(m, {})}
                cfg = dataclasses.replace(base, method=m, seed=seed, method_kwargs=kw)
                res = train(cfg, out, resume=True, data=data, on_log=tracked)
                what = "trained" if res.resumed_from < res.epochs else "already trained"
                new = evaluate_checkpoint(res.checkpoint, evaluators, device=cfg.device, data=data)
                tracked.finish(new)
            except BaseException as exc:  # sorted by _run_failure, the rest re-raised
                status = _run_failure(exc)
                if status is None or cfg is None:
                    raise
                reason = _one_line(exc)
                failures.append({"method": m, "seed": seed, "status": status, "reason": reason})
                log(failure_line(m, seed, status, reason))
                if not isinstance(exc, RunLockedError):  # the run belongs to another process now
                    row = failure_row(dataclasses.replace(cfg), out, data.kind, status, reason)
                    save_rows(out / row["run_id"] / "results.jsonl", [row])
                    rows.append(row)
                bar.update(1)
                continue
            finally:
                tracked.close()  # a failed run's tracker runs are marked failed
            by_ev: dict[str, dict] = {}
            for r in new:
                by_ev.setdefault(r["evaluator"], {})[r["metric"]] = r["value"]
            log(run_line(m, seed, what, res.train_seconds, time.perf_counter() - t0, by_ev))
            rows += new
            bar.update(1)
