"""Command line: ``ssl-bench run|train|eval|eval-embeddings|list|leaderboard|compare|report|check-collapse``,
``study`` and ``select`` (also ``python -m ssl_bench``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, TYPE_CHECKING

from .errors import ConfigError, SSLBenchError

if TYPE_CHECKING:
    from .config import RunConfig
    from .embeddings import Embeddings

EPILOG = (
    "Exit status: 0 done; 1 the command finished but a run failed or diverged, or a check failed; "
    "2 a usage, configuration or data error, printed on one line (--traceback or SSL_BENCH_TRACEBACK=1 "
    "shows the full trace). Docs: README.md and docs/."
)


class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line (``ssl-bench: error: ...``, status 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        msg = " ".join(message.split())
        self.exit(2, f"ssl-bench: error: {self.prog}: {msg} (see `{self.prog} --help`)\n")


def _names(text: str | None, what: str) -> list[str] | None:
    """``"a, b"`` -> ["a", "b"]; an empty list or an empty name is an error."""
    if text is None:
        return None
    names = [s.strip() for s in text.split(",")]
    if not any(names):
        raise ConfigError(f"{what} is empty: name at least one")
    if not all(names):
        raise ConfigError(f"{what} {text!r} holds an empty name")
    return names


_SCI = __import__("re").compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _parse_kv(items: list[str] | None, what: str) -> dict:
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{what} must look like key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            val = yaml.safe_load(v)
        except yaml.YAMLError as exc:
            first = " ".join(str(exc).split())
            raise ConfigError(f"{what} {item!r}: cannot parse the value ({first})") from None
        if isinstance(val, str) and _SCI.match(val.strip()):  # YAML 1.1 reads 1e30 as a string
            val = float(val)
        if not k.strip():
            raise ConfigError(f"{what} {item!r}: the key is empty")
        out[k.strip()] = val
    return out


def _seeds(text: str, flag: str = "--seeds") -> list[int]:
    from .config import parse_seeds

    return parse_seeds(text, flag)


def _run_seeds(seeds: str | None, num_seeds: int | None = None) -> list[int]:
    """``run``'s seeds: ``--seeds`` (a list or range, see :func:`_seeds`) or ``--num-seeds N``
    (seeds 0..N-1); neither: seed 0."""
    if seeds is not None and num_seeds is not None:
        raise ConfigError("give --seeds (a list or range: 0,1,2 or 0-2) or --num-seeds N, not both")
    if num_seeds is not None:
        if num_seeds < 1:
            raise ConfigError(f"--num-seeds must be >= 1, got {num_seeds}")
        return list(range(num_seeds))
    return _seeds(seeds) if seeds is not None else [0]


def _add_common(p: argparse.ArgumentParser, method: bool = True) -> None:
    p.add_argument("--dataset", default=None, help="dataset name (default: fashion-mnist; see `list datasets`)")
    p.add_argument(
        "--preset",
        default=None,
        choices=["smoke", "quick", "standard", "speedrun", "full"],
        help="training budget (default: quick)",
    )
    p.add_argument("--backbone", default=None, help="see `list backbones`, e.g. cnn-wide, timm:<name> (default: auto)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="train for SECONDS of wall-clock: the total steps are fixed from a short throughput probe, the "
        "schedules end on time, and --epochs becomes the number of equal parts (config key time_budget; "
        "the speedrun preset sets 60)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="override the preset's batch size")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: per optimiser/method)")
    p.add_argument("--device", default=None, help="auto (CUDA when present) | cpu | cuda[:N]")
    p.add_argument("--data-root", default=None, help="where datasets live (default: $SSL_BENCH_DATA, system paths)")
    p.add_argument(
        "--evaluators",
        default=None,
        help="comma-separated evaluators (default: every evaluator that fits the preset budget)",
    )
    p.add_argument("--config", default=None, help="YAML/JSON file with RunConfig keys; flags override it")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        metavar="KEY=VALUE",
        help="any RunConfig key, e.g. --set train_subset=5000 (repeatable)",
    )
    if method:
        p.add_argument(
            "--opt", action="append", metavar="KEY=VALUE", help="method option, e.g. --opt temperature=0.2 (repeatable)"
        )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (run: the sweep bar with its ETA and the per-epoch bar; "
        "off anyway when stderr is not a terminal)",
    )


def _config_from_args(a: argparse.Namespace, method: str | None = None) -> RunConfig:
    from .config import RunConfig

    d = RunConfig.from_file(a.config).to_dict() if a.config else {}
    d.update(_parse_kv(a.sets, "--set"))
    flags = {
        "dataset": a.dataset,
        "preset": a.preset,
        "backbone": a.backbone,
        "epochs": a.epochs,
        "time_budget": getattr(a, "time_budget", None),
        "batch_size": a.batch_size,
        "lr": a.lr,
        "device": a.device,
        "data_root": a.data_root,
    }
    d.update({k: v for k, v in flags.items() if v is not None})
    if method:
        d["method"] = method
    if getattr(a, "opt", None):
        d["method_kwargs"] = {**d.get("method_kwargs", {}), **_parse_kv(a.opt, "--opt")}
    if a.evaluators is not None:
        d["evaluators"] = _names(a.evaluators, "--evaluators")
    if a.no_progress:
        d["progress"] = False
    return RunConfig.from_dict(d)


def _method_opts(a: argparse.Namespace, methods_text: str) -> tuple[dict, dict]:
    """(options for every method, {method: options}) from ``--opt KEY=VALUE`` / ``--opt METHOD.KEY=VALUE``."""
    common: dict = {}
    scoped: dict = {}
    for k, v in _parse_kv(getattr(a, "opt", None), "--opt").items():
        if "." in k:
            m, opt = k.split(".", 1)
            if not m or not opt:
                raise ConfigError(f"--opt keys look like KEY or METHOD.KEY, got {k!r}")
            scoped.setdefault(m.strip().lower(), {})[opt.strip()] = v
        else:
            common[k] = v
    several = methods_text.strip() == "all" or len([m for m in methods_text.split(",") if m.strip()]) > 1
    if common and several:
        raise ConfigError("--opt KEY=VALUE applies to one method; with several --methods write --opt METHOD.KEY=VALUE")
    return common, scoped


def _add_log_to(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-to",
        default=None,
        metavar="TRACKERS",
        help="also log to experiment trackers, comma-separated: tensorboard, wandb (offline unless "
        "WANDB_MODE says otherwise), mlflow (a SQLite store in the runs directory unless "
        "MLFLOW_TRACKING_URI is set); each an extra: pip install 'ssl-bench[trackers]'",
    )


def cmd_run(a: argparse.Namespace) -> int:
    _names(a.methods, "--methods")
    log_to = _trackers(a.log_to)
    seeds = _run_seeds(a.seeds, a.num_seeds)
    common, scoped = _method_opts(a, a.methods)
    opt, a.opt = a.opt, None
    base = _config_from_args(a)  # config errors before torch is imported
    a.opt = opt
    if common:
        base = base.__class__.from_dict({**base.to_dict(), "method_kwargs": {**base.method_kwargs, **common}})
    if a.json or a.quiet:
        base = base.__class__.from_dict({**base.to_dict(), "progress": False})
    runs = Path(a.runs)
    if a.reference and a.reference.strip().lower() != "none" and not Path(a.reference).is_dir():
        raise ConfigError(f"--reference {a.reference}: no such folder (give a folder of board CSVs, or none)")

    from .build import load_data, select_methods
    from .console import logger
    from .leaderboard import write_leaderboards
    from .pipeline import SweepFailed, run_sweep
    from .registry import EVALUATORS, METHODS

    names = METHODS.resolve(a.methods)  # unknown names and options: errors before the data is loaded
    EVALUATORS.resolve(base.evaluators)
    stray = sorted(set(scoped) - set(names))
    if stray:
        raise ConfigError(f"--opt names method(s) {stray} that are not in --methods ({', '.join(names)})")
    data = load_data(base)
    methods, skipped = select_methods(a.methods, base.dataset, data.kind)
    if skipped:  # `--methods all` on data some methods cannot train on (ijepa, mae on vectors)
        needs = sorted({k for m in skipped for k in METHODS.get(m).data_kinds})
        logger.info(
            f"[methods] skipped {', '.join(skipped)}: {' or '.join(needs)} data only, and {base.dataset} is "
            f"{data.kind} data; running the other {len(methods)}"
        )
    base = base.__class__.from_dict({**base.to_dict(), "method": methods[0]})
    if a.launcher != "inprocess":
        if log_to:
            raise ConfigError("--log-to works with --launcher inprocess only")
        if scoped:
            raise ConfigError("--opt METHOD.KEY=VALUE works with --launcher inprocess only")
        from .launch import SlurmOptions, submit_sweep

        slurm = SlurmOptions(
            partition=a.partition,
            timeout_min=a.timeout_min,
            gpus_per_node=a.gpus_per_node,
            cpus_per_task=a.cpus_per_task,
        )
        rows = submit_sweep(methods, base, seeds, runs, a.launcher, baselines=not a.no_baselines, slurm=slurm)
        failures: list = []
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0:
        from .launch import train_only  # torchrun: ranks > 0 join the training, rank 0 evaluates and writes

        train_only(methods, base, seeds, runs, data=data)
        return 0
    else:
        rows, failures = run_sweep(
            methods,
            base,
            seeds,
            runs,
            baselines=not a.no_baselines,
            method_opts=scoped,
            return_failures=True,
            data=data,
            log_to=log_to,
        )
    if failures and len(failures) == len(methods) * len(seeds) and not any(r.get("status", "ok") == "ok" for r in rows):
        raise SweepFailed(failures, all_failed=True, written=False)
    # the run's own tables and report go under the runs directory (git-ignored runs/ by default):
    # a run never rewrites the committed boards (only `ssl-bench leaderboard --readme` does)
    lb_dir = Path(a.leaderboards) if a.leaderboards else runs / "leaderboards"
    written = write_leaderboards(runs, lb_dir, [base.dataset], command="ssl-bench leaderboard")
    if not a.no_report:
        from .report import write_report

        written.append(write_report(runs, Path(a.report_out) if a.report_out else runs / "report"))
    if log_to:
        from .trackers import log_report

        log_report(log_to, runs, base.dataset, written)
    ok_rows = [r for r in rows if r.get("status", "ok") == "ok"]
    check = _reproduction_check(a.reference, runs, base.dataset, rows)
    if a.json:
        print(
            json.dumps(
                {
                    "rows": len(ok_rows),
                    "written": [str(p) for p in written],
                    "failures": failures,
                    "reproduction": check.to_dict() if check is not None else None,
                },
                sort_keys=True,
                default=str,
            )
        )
    else:
        print(f"{len(ok_rows)} result rows; wrote " + ", ".join(str(p) for p in written))
        if check is not None:
            from .reproduce import format_check

            print("\n".join(format_check(check)))
    if failures:
        raise SweepFailed(failures, all_failed=len(failures) == len(methods) * len(seeds))
    return 0


def _reproduction_check(reference: str | None, runs: Path, dataset: str, rows: list[dict]) -> Any:
    """The reproduction check of this sweep's rows against the reference boards (``--reference``:
    a folder of board CSVs, ``none``, or by default the boards shipped with ssl-bench); None when
    it is off or no board has a row of the same dataset, preset, backbone and configuration."""
    from .reproduce import reference_dir, run_check

    if reference is not None and reference.strip().lower() == "none":
        return None
    folder = Path(reference) if reference else reference_dir()
    from .leaderboard import aggregate, load_frame

    ids = {r["run_id"] for r in rows if r.get("status", "ok") == "ok"}
    if not ids or folder is None:
        return None
    df = load_frame(runs)
    df = df[(df["dataset"] == dataset) & df["run_id"].isin(ids)]
    return run_check(aggregate(df), dataset, folder) if not df.empty else None


def _trackers(text: str | None) -> list[str]:
    if not text:
        return []
    from .trackers import parse

    return parse(text)


def cmd_train(a: argparse.Namespace) -> int:
    cfg = _config_from_args(a, method=a.method)  # config errors before torch is imported
    log_to = _trackers(a.log_to)

    from .distributed import is_main
    from .registry import EVALUATORS
    from .trackers import TrackerSession
    from .trainer import train

    EVALUATORS.resolve(cfg.evaluators)  # the evaluators its checkpoints will be judged by must exist
    session = TrackerSession(log_to, Path(a.runs))  # opens with the run, on the rank that logs
    try:
        res = train(cfg, Path(a.runs), resume=a.resume, save_every_steps=a.save_every_steps, on_log=session)
        session.finish()
    finally:
        session.close()
    start = f" (resumed after epoch {res.resumed_from})" if res.resumed_from else ""
    if is_main() and a.json:  # under torchrun, rank 0 reports
        keys = ("epochs", "resumed_from", "train_seconds", "checkpoint", "run_dir")
        info = {k: getattr(res, k) for k in keys if hasattr(res, k)}
        print(json.dumps({"method": cfg.method, "seed": cfg.seed, **info}, sort_keys=True, default=str))
    elif is_main():
        print(f"trained {cfg.method} for {res.epochs} epochs{start} in {res.train_seconds:.1f}s -> {res.checkpoint}")
    return 0


def _eval_opts(items: list[str] | None) -> dict[str, dict]:
    """``--eval-opt EVALUATOR.KEY=VALUE`` (repeatable) -> {evaluator: {key: value}}."""
    kwargs: dict = {}
    for k, v in _parse_kv(items, "--eval-opt").items():
        if "." not in k:
            raise ConfigError(f"--eval-opt keys look like evaluator.option, got {k!r}")
        ev, opt = k.split(".", 1)
        kwargs.setdefault(ev, {})[opt] = v
    return kwargs


def cmd_eval(a: argparse.Namespace) -> int:
    evaluators = _names(a.evaluators, "--evaluators")
    if a.device is not None:
        from .config import DEVICE_RE

        if not DEVICE_RE.match(a.device.strip()):
            raise ConfigError(f"unknown device {a.device!r}; use auto, cpu, cuda or cuda:N")

    from .pipeline import ResultsNotSavedError, evaluate_checkpoint

    checkpoint, external = _eval_target(a)
    unsaved = None
    try:
        if external or checkpoint is None:
            rows = _eval_encoder(a, evaluators)
        else:
            rows = evaluate_checkpoint(
                Path(checkpoint),
                evaluators,
                _eval_opts(a.eval_opt),
                device=a.device or "auto",
                dataset=a.dataset,
                data_root=a.data_root,
            )
    except ResultsNotSavedError as exc:  # the numbers are printed, the error says where the rows went
        rows, unsaved = exc.rows, exc
    from .evaluator import format_metrics, readable

    result: dict = {}
    for r in rows:
        result.setdefault(r["evaluator"], {})[r["metric"]] = r["value"]
    if a.json:
        print(json.dumps({ev: readable(ev, m) for ev, m in result.items()}, sort_keys=True))
    else:
        for ev, metrics in result.items():
            print(f"{ev}: " + format_metrics(ev, metrics, 4))
    if unsaved is not None:
        raise unsaved
    return 0


#: ``eval`` options that only an external encoder (``--encoder SPEC``) takes.
ENCODER_ONLY = ("weights", "strip_prefix", "input_size", "layer", "out", "preset", "encoder_seed")


def _eval_target(a: argparse.Namespace) -> tuple[str | None, bool]:
    """(checkpoint path, external?): ``eval CHECKPOINT``, ``eval --encoder SPEC``, or ``--encoder``
    naming an ssl-bench checkpoint (a ``.safetensors`` file), which is evaluated as today."""
    if a.checkpoint and a.encoder:
        raise ConfigError("give a CHECKPOINT or --encoder SPEC, not both")
    if not a.checkpoint and not a.encoder:
        raise ConfigError("give a CHECKPOINT (an epoch_*.safetensors file) or --encoder SPEC")
    ckpt = a.checkpoint or (a.encoder if a.encoder.endswith(".safetensors") and Path(a.encoder).is_file() else None)
    if ckpt is not None:
        given = [
            f"--{k.replace('encoder_', '').replace('_', '-')}" for k in ENCODER_ONLY if getattr(a, k) not in (None, "")
        ]
        if given:
            raise ConfigError(f"{', '.join(given)} apply to --encoder SPEC, not to an ssl-bench checkpoint")
        return ckpt, False
    return None, True


def _eval_encoder(a: argparse.Namespace, evaluators: list[str] | None) -> list[dict]:
    from .external_eval import evaluate_external

    return evaluate_external(
        a.encoder,
        Path(a.out or "runs"),
        dataset=a.dataset or "fashion-mnist",
        data_root=a.data_root,
        evaluators=evaluators,
        weights=a.weights,
        prefix=a.strip_prefix or "",
        input_size=a.input_size,
        layer=a.layer or "",
        preset=a.preset or "quick",
        seed=a.encoder_seed or 0,
        device=a.device or "auto",
        eval_train_subset=a.eval_train_subset,
        eval_test_subset=a.eval_test_subset,
        progress=not a.no_progress,
    )


def load_embeddings_file(path: Path, need_labels: bool) -> Embeddings:
    """An :class:`Embeddings` from a user's .npz, checked; bad input raises a one-line ConfigError."""
    import numpy as np

    from .embeddings import Embeddings

    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        z = np.load(path, allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # not a zip / not npz / object arrays
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        raise ConfigError(f"{path}: not a readable .npz file ({why})") from None
    for k in ("train_x", "test_x") + (("train_y", "test_y") if need_labels else ()):
        if k not in arrays:
            raise ConfigError(f"{path}: missing array {k!r} (has: {', '.join(sorted(arrays)) or 'nothing'})")
    x = {}
    for k in ("train_x", "test_x"):
        a = arrays[k]
        if np.iscomplexobj(a):
            raise ConfigError(f"{path}: {k} is complex; embeddings must be real numbers")
        if a.ndim != 2 or len(a) < 2 or a.shape[1] < 1 or not np.issubdtype(a.dtype, np.number):
            raise ConfigError(
                f"{path}: {k} must be a numeric (N >= 2, D >= 1) matrix, got shape {a.shape} dtype {a.dtype}"
            )
        if not np.isfinite(a).all():
            raise ConfigError(f"{path}: {k} holds NaN or inf values")
        x[k] = np.ascontiguousarray(a, dtype=np.float32)
    if x["train_x"].shape[1] != x["test_x"].shape[1]:
        raise ConfigError(f"{path}: train_x has {x['train_x'].shape[1]} columns but test_x has {x['test_x'].shape[1]}")
    y: dict[str, np.ndarray | None] = {}
    for k, xk in (("train_y", "train_x"), ("test_y", "test_x")):
        if k not in arrays:
            y[k] = None
            continue
        a = arrays[k]
        if a.ndim != 1 or len(a) != len(x[xk]):
            raise ConfigError(
                f"{path}: {k} must be a vector of {len(x[xk])} labels (one per row of {xk}), got shape {a.shape}"
            )
        if np.iscomplexobj(a):
            raise ConfigError(f"{path}: {k} is complex; labels must be integers")
        if not (
            np.issubdtype(a.dtype, np.integer)
            or (np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all() and (a == np.round(a)).all())
        ):
            raise ConfigError(f"{path}: {k} must hold integer class labels, got dtype {a.dtype}")
        if len(a) and (a.min() < 0 or a.max() >= 100_000):
            raise ConfigError(f"{path}: {k} labels must lie in [0, 100000), found {a.min()}..{a.max()}")
        y[k] = a.astype(np.int64)
    if (y["train_y"] is None) != (y["test_y"] is None):
        raise ConfigError(f"{path}: give both train_y and test_y, or neither")
    return Embeddings(x["train_x"], y["train_y"], x["test_x"], y["test_y"], str(path))


def cmd_eval_embeddings(a: argparse.Namespace) -> int:
    wanted = _names(a.evaluators, "--evaluators")
    from .pipeline import run_evaluators
    from .registry import EVALUATORS

    names = EVALUATORS.resolve(wanted if wanted is not None else a.evaluators)
    model_evs = [n for n in names if EVALUATORS.get(n).needs_model]
    if model_evs:
        raise ConfigError(
            f"evaluator(s) {', '.join(model_evs)} need a model, not embeddings: use `ssl-bench eval CHECKPOINT`"
        )
    emb = load_embeddings_file(Path(a.file), any(EVALUATORS.get(n).needs_labels for n in names))
    res = run_evaluators(emb, names, _eval_opts(a.eval_opt), artifact_dir=Path(a.artifacts) if a.artifacts else None)
    result = {name: metrics for name, (metrics, _secs) in res.items()}
    if a.json:  # strict JSON: a non-finite value (e.g. alpha of a constant output) is null
        import math

        clean = {ev: {k: (v if math.isfinite(v) else None) for k, v in m.items()} for ev, m in result.items()}
        from .evaluator import readable

        print(json.dumps({ev: readable(ev, m) for ev, m in clean.items()}, sort_keys=True))
    else:
        for ev, metrics in result.items():
            from .evaluator import format_metrics

            print(f"{ev}: " + format_metrics(ev, metrics, 4) + f"  ({res[ev][1]:.1f}s)")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from .registry import BACKBONES, DATASETS, EVALUATORS, METHODS

    reg = {"methods": METHODS, "evaluators": EVALUATORS, "datasets": DATASETS, "backbones": BACKBONES}[a.what]
    names = reg.names()
    if a.json:
        print(json.dumps(names))
    else:
        for n in names:
            obj = reg.get(n)
            module = sys.modules.get(getattr(obj, "__module__", ""))
            doc = (obj.__doc__ or getattr(module, "__doc__", None) or "").strip().splitlines()
            kinds = getattr(obj, "data_kinds", None) if a.what == "methods" else None
            only = f" [{' or '.join(kinds)} data only]" if kinds and set(kinds) != {"image", "vector"} else ""
            print(f"{n:20s} {doc[0] if doc else ''}{only}")
    return 0


def cmd_leaderboard(a: argparse.Namespace) -> int:
    from .headline import headline_for
    from .leaderboard import readme_blocks, refresh_readme, write_leaderboards

    if a.readme:  # a broken or read-only README is refused before anything is written
        readme_blocks(Path(a.readme))
    written = write_leaderboards(
        Path(a.runs), Path(a.out), [a.dataset] if a.dataset else None, command="ssl-bench leaderboard"
    )
    if not written:
        raise SSLBenchError(f"no result rows under {a.runs}: run `ssl-bench run` first")
    if a.readme:  # the README gets the short headline table (ssl_bench.headline); the full one is in --out
        command = f"ssl-bench leaderboard --runs {a.runs} --out {a.out} --readme {a.readme}"
        written += refresh_readme(
            Path(a.readme), [p for p in written if p.suffix == ".md"], bool(a.dataset), headline_for(command)
        )
    if a.json:
        print(json.dumps({"written": [str(p) for p in written]}))
    else:
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_board(a: argparse.Namespace) -> int:
    from . import board
    from .boardspec import load_spec

    if a.list:
        print(board.list_boards())
        return 0
    if (a.name is None) == (a.spec is None):
        raise ConfigError("board: name one built-in board (ssl-bench board --list) or give --spec FILE")
    spec = load_spec(a.name, a.spec)
    opts = board.Options(
        leaderboards=Path(a.leaderboards),
        out=Path(a.out),
        dry_run=a.dry_run,
        table_only=a.table_only,
        refresh=a.refresh,
        jobs=a.jobs,
        deadline=board.parse_deadline(a.deadline),
        device=a.device,
        readme=Path(a.readme) if a.readme else None,
        progress=not a.no_progress,
        only=a.only,
    )
    if a.compact_rows:
        print(board.compact_rows(spec, opts))
        return 0
    if a.curves or a.check:
        return _board_tools(a, spec, opts)
    return board.run_board(spec, opts)


def _board_tools(a: argparse.Namespace, spec: Any, opts: Any) -> int:
    """``--curves`` (the training curves of each run) and ``--check RUN.csv`` (a run against the board)."""
    import pandas as pd

    from . import board, board_tools

    if a.check:
        table = Path(a.leaderboards) / f"{spec.name}.csv"
        if not table.is_file():
            raise ConfigError(f"board {spec.name}: no table {table} (ssl-bench board {spec.name} --table-only)")
        from .reproduce import check, format_check, load_reference

        res = check(pd.read_csv(a.check), load_reference([table]), _names(a.metrics, "--metrics") or [])
        print("\n".join(format_check(res)) if sum(res.compared.values()) else "no row in common")
        return 0
    md = board_tools.curves_table(board.rows_dir(spec, opts.leaderboards))
    if a.doc is None:
        sys.stdout.write(md)
        return 0
    block = a.block or "curves"
    cmd = f"{board.board_command(spec)} --curves --doc {a.doc}" + (f" --block {block}" if block != "curves" else "")
    board_tools.replace_block(Path(a.doc), block, md, cmd)
    print(f"wrote the {block} block of {a.doc}")
    return 0


def add_board_parser(sub: Any) -> None:
    bo = sub.add_parser(
        "board",
        help="plan, train what is missing and rebuild a board's table from its rows (ssl-bench board --list)",
        epilog=EPILOG,
        description="A board is a TOML spec (dataset, preset, backbones, methods with options, seeds, "
        "evaluators, references): the built-in ones are named by their table (leaderboards/NAME.md), "
        "a user's own is --spec FILE. The command plans the (method, backbone, seed) runs, trains and "
        "evaluates only those whose rows are missing from leaderboards/NAME-rows/ (stale rows, trained "
        "under another recipe, are reported; --refresh retrains them) and rebuilds leaderboards/NAME.{csv,md}.",
    )
    bo.add_argument("name", nargs="?", default=None, help="a built-in board (see --list)")
    bo.add_argument("--spec", default=None, help="a board spec file (TOML) instead of a built-in name")
    bo.add_argument("--list", action="store_true", help="list the built-in boards")
    bo.add_argument("--dry-run", action="store_true", help="print the plan: what would be trained, what is stale")
    bo.add_argument("--table-only", action="store_true", help="only rebuild the table from the rows: never train")
    bo.add_argument(
        "--refresh",
        action="store_true",
        help="retrain the runs whose rows are stale, and recompute random-init rows whose BN statistics "
        "were never recalibrated",
    )
    bo.add_argument("--jobs", type=int, default=1, help="trainings at once, each a child process (default: 1)")
    bo.add_argument(
        "--deadline",
        default=None,
        help="e.g. 540s, 9m: no run starts that cannot finish before it, "
        "a run still going then is stopped (resumable by the next call)",
    )
    bo.add_argument("--device", default=None, help="cpu | cuda | auto (default: the spec's, else auto)")
    bo.add_argument("--leaderboards", default="leaderboards", help="where NAME.{csv,md} and NAME-rows/ are")
    bo.add_argument("--out", default=str(Path("runs") / "board"), help="checkpoints (default: runs/board/)")
    bo.add_argument("--readme", default=None, help="also rebuild the <!-- leaderboard:DATASET --> block of this file")
    bo.add_argument(
        "--compact-rows",
        action="store_true",
        help="rewrite the board's rows in the compact layout "
        "(schema 3: the configuration once per run), keeping every value; trains nothing",
    )
    bo.add_argument(
        "--curves",
        action="store_true",
        help="print each run's training curve (loss, online k-NN) "
        "from the train_log.csv beside its rows; trains nothing",
    )
    bo.add_argument("--doc", default=None, help="with --curves: replace the <!-- BLOCK --> block of this file instead")
    bo.add_argument("--block", default=None, help="with --doc: the block's marker name (default: curves)")
    bo.add_argument(
        "--check",
        default=None,
        metavar="RUN_CSV",
        help="whether each row of a run's table "
        "(ssl-bench run's CSV) lies inside the board's 95%% interval; trains nothing",
    )
    bo.add_argument("--metrics", default="knn_top1,linear_top1", help="with --check (default: %(default)s)")
    bo.add_argument("--no-progress", action="store_true", help="no progress bar")
    bo.add_argument("--only", type=int, default=None, help=argparse.SUPPRESS)  # a child process: run I of the plan
    bo.set_defaults(func=cmd_board)


def cmd_compare(a: argparse.Namespace) -> int:
    from .leaderboard import compare, format_compare, load_frame

    df = load_frame(Path(a.runs))
    if df.empty:
        raise SSLBenchError(f"no result rows under {a.runs}: run `ssl-bench run` first")
    if a.dataset:
        df = df[df["dataset"] == a.dataset]
    res = compare(df, a.a, a.b)
    if a.json:  # strict JSON: NaN -> null
        import math

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        print(json.dumps(clean(res), sort_keys=True))
    else:
        print(format_compare(res, all_metrics=a.all))
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from .report import write_report

    log = None if a.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    print(f"wrote {write_report(Path(a.runs), Path(a.out), log=log)}")
    return 0


def cmd_check_collapse(a: argparse.Namespace) -> int:
    from .collapse import builtin_cases_path, format_table, load_cases, quick_cases, run_suite

    cases = load_cases(a.cases)  # a malformed file fails here, before any training
    if a.quick:
        cases = quick_cases(cases)
    if a.only:
        wanted = [n.strip() for n in a.only.split(",") if n.strip()]
        missing = sorted(set(wanted) - {c.name for c in cases})
        if missing:
            raise ConfigError(f"--only: no case(s) {missing} in {a.cases or builtin_cases_path()}")
        cases = [c for c in cases if c.name in wanted]
    log = None if a.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if a.jobs is None:
        from .collapse import usable_cores

        a.jobs = usable_cores()
    if a.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {a.jobs}")
    results = run_suite(
        cases, _seeds(a.seeds) if a.seeds else None, workdir=a.keep, log=log, jobs=a.jobs, early_stop=not a.full_budget
    )
    if a.json:
        print(
            json.dumps({"cases": [r.to_dict() for r in results], "passed": all(r.ok for r in results)}, sort_keys=True)
        )
    else:
        print(format_table(results))
    return 0 if all(r.ok for r in results) else 1


def cmd_study(a: argparse.Namespace) -> int:
    from .studies import get

    study = get(a.study)
    if a.budget not in ("tiny", "default"):
        raise ConfigError(f"--budget must be tiny or default, got {a.budget!r}")
    if a.threads is not None and a.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {a.threads}")
    if a.threads is not None:  # every training (config num_threads is None: the process's count) and evaluation
        from . import threads

        threads.pin(a.threads)
    written = study.run(a)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_select(a: argparse.Namespace) -> int:
    from .studies.selection import format_selection, select_runs

    picks = select_runs(Path(a.runs), a.by, dataset=a.dataset)
    if a.json:
        print(json.dumps(picks, sort_keys=True, default=str))
    else:
        print(format_selection(picks, a.by))
    return 0


def _add_encoder_options(e: argparse.ArgumentParser) -> None:
    g = e.add_argument_group("an encoder trained anywhere (docs/evaluate-your-encoder.md)")
    g.add_argument(
        "--encoder",
        metavar="SPEC",
        default=None,
        help="timm:ARCH | torchvision:ARCH | hf:FOLDER (save_pretrained, read offline) | MODULE:CALLABLE "
        "(a factory returning an nn.Module) | an ssl-bench .safetensors checkpoint",
    )
    g.add_argument(
        "--weights",
        metavar="FILE",
        default=None,
        help=".safetensors, .pth, .pt or Lightning .ckpt (tensors only: a pickle of other objects is "
        "refused); default: the SPEC's own (random init for timm/torchvision)",
    )
    g.add_argument(
        "--strip-prefix",
        metavar="P",
        default=None,
        help="keep the keys under P and remove P, e.g. backbone., model.backbone., module., teacher.backbone.",
    )
    g.add_argument(
        "--input-size", metavar="N", type=int, default=None, help="resize images to N x N (default: the encoder's)"
    )
    g.add_argument("--layer", default=None, help="evaluate this sub-module's output (pooled) instead of the features")
    g.add_argument("--out", default=None, help="runs directory the rows go to (default: runs/)")
    g.add_argument(
        "--preset",
        default=None,
        choices=["smoke", "quick", "standard", "full"],
        help="evaluation budget and subsets (default: quick)",
    )
    g.add_argument(
        "--seed", dest="encoder_seed", metavar="SEED", type=int, default=None, help="seed of a random init (default: 0)"
    )
    g.add_argument(
        "--eval-train-subset", metavar="N", type=int, default=None, help="labelled training images used (seeded)"
    )
    g.add_argument("--eval-test-subset", metavar="N", type=int, default=None, help="test images used (seeded)")
    g.add_argument("--no-progress", action="store_true", help="no embedding progress bar")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(
        prog="ssl-bench", description="Train, evaluate and rank self-supervised representation learners.", epilog=EPILOG
    )
    p.add_argument("--version", action="version", version=f"ssl-bench {__version__}")
    p.add_argument(
        "--traceback",
        action="store_true",
        help="show the full Python traceback of an error (also: SSL_BENCH_TRACEBACK=1)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    r = sub.add_parser(
        "run",
        help="train + evaluate methods x seeds, add baselines, write the leaderboard",
        description="Train (or resume) every method for every seed, evaluate the last checkpoint "
        "with the evaluators, add the pixels and random-init reference rows, write "
        "RUNS/leaderboards/<dataset>.csv and .md and the report RUNS/report/index.html, and end with a "
        "reproduction check against the committed board of the same dataset, preset and backbone. "
        "Nothing outside RUNS is written.",
        epilog=EPILOG,
    )
    r.add_argument(
        "--methods",
        default="all",
        help="'all' (every method that trains on the dataset's kind of data; the others, e.g. the "
        "image-only ijepa and mae on mog2d, are skipped with a one-line note) or comma-separated "
        "names (default: all)",
    )
    r.add_argument(
        "--seeds",
        default=None,
        help="which seeds: a list and/or ranges, e.g. 0,1,2 or 0-2 or 5 (seed 5 alone) (default: 0). "
        "For a count use --num-seeds",
    )
    r.add_argument("--num-seeds", type=int, default=None, metavar="N", help="seeds 0..N-1 (3 = seeds 0,1,2)")
    r.add_argument("--runs", default="runs", metavar="DIR", help="runs directory, read and written (default: runs/)")
    r.add_argument("--out", dest="runs", default=argparse.SUPPRESS, metavar="DIR", help="deprecated spelling of --runs")
    r.add_argument(
        "--leaderboards",
        default=None,
        help="where this run's tables go (default: RUNS/leaderboards; the committed boards are "
        "updated only by `ssl-bench leaderboard --readme`)",
    )
    r.add_argument(
        "--reference",
        default=None,
        metavar="DIR|none",
        help="board CSVs to check the rows against at the end (default: the boards shipped with "
        "ssl-bench, when one has the same dataset, preset, backbone and configuration; none: no check)",
    )
    r.add_argument("--quiet", action="store_true", help="no per-run lines and no progress bars; the summary only")
    r.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object at the end (rows, files written, failures, reproduction check), nothing else",
    )
    r.add_argument("--no-baselines", action="store_true", help="skip the pixels / random-init rows")
    r.add_argument("--no-report", action="store_true", help="do not write the HTML report at the end")
    r.add_argument(
        "--report-out",
        default=None,
        help="where the HTML report goes (default: RUNS/report)",
    )
    r.add_argument(
        "--launcher",
        default="inprocess",
        choices=["inprocess", "local", "slurm"],
        help="inprocess (default) | local: a submitit process per (method, seed) | slurm: a "
        "submitit SLURM job per (method, seed); the driver waits and writes the leaderboards",
    )
    r.add_argument("--partition", default=None, help="slurm: partition")
    r.add_argument("--timeout-min", type=int, default=60, help="slurm/local: job time limit in minutes (default: 60)")
    r.add_argument("--gpus-per-node", type=int, default=0, help="slurm: GPUs per job (default: 0)")
    r.add_argument("--cpus-per-task", type=int, default=4, help="slurm: CPU cores per job (default: 4)")
    _add_log_to(r)
    _add_common(r)
    r.set_defaults(func=cmd_run)

    t = sub.add_parser(
        "train",
        help="train one method",
        epilog=EPILOG,
        description="Train one method into OUT/<run_id>/ with a checkpoint per epoch.",
    )
    t.add_argument("--method", required=False, default="simclr", help="method name (default: simclr)")
    t.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    t.add_argument("--runs", default="runs", help="runs directory (default: runs/)")
    t.add_argument("--out", dest="runs", default=argparse.SUPPRESS, help="deprecated spelling of --runs")
    t.add_argument("--json", action="store_true", help="print one JSON object (checkpoint, epochs, seconds)")
    t.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    t.add_argument(
        "--save-every-steps",
        type=int,
        default=0,
        metavar="N",
        help="also save the resume state every N steps within an epoch (long epochs: --resume then "
        "restarts at the next batch; default: at epoch ends only)",
    )
    _add_log_to(t)
    _add_common(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser(
        "eval",
        help="evaluate a checkpoint (embeddings cached)",
        epilog=EPILOG,
        description="Evaluate CHECKPOINT (an epoch_*.safetensors file; rows go to its run's results.jsonl), "
        "or an encoder trained anywhere with --encoder SPEC (rows go to OUT/<run id>/results.jsonl, "
        "labelled external:SPEC [weights=NAME]; see docs/evaluate-your-encoder.md).",
    )
    e.add_argument("checkpoint", nargs="?", default=None)
    _add_encoder_options(e)
    e.add_argument("--evaluators", default=None, help="comma-separated (default: those of the run's config)")
    e.add_argument("--device", default=None, help="auto (CUDA when present) | cpu | cuda[:N] (default: auto)")
    e.add_argument(
        "--eval-opt",
        action="append",
        metavar="EVALUATOR.KEY=VALUE",
        help="evaluator option, e.g. --eval-opt knn.k=10 --eval-opt linear.mode=protocol (repeatable)",
    )
    e.add_argument(
        "--dataset", default=None, help="dataset to evaluate on (default: the checkpoint's, if it is a registered name)"
    )
    e.add_argument(
        "--data-root",
        default=None,
        help="where the dataset lives (default: $SSL_BENCH_DATA, system "
        "paths; a data root recorded in the checkpoint is never used)",
    )
    e.add_argument("--json", action="store_true", help="print one JSON object {evaluator: {metric: value}}")
    e.set_defaults(func=cmd_eval)

    ee = sub.add_parser(
        "eval-embeddings",
        help="evaluate embeddings from any model (.npz)",
        epilog=EPILOG,
        description="Evaluate FILE.npz holding train_x, test_x (N x D) and train_y, test_y "
        "(integer labels; optional for label-free evaluators such as rankme, collapse, "
        "alpha-req).",
    )
    ee.add_argument("file")
    ee.add_argument(
        "--evaluators",
        default="knn,linear,rankme,collapse",
        help="comma-separated embedding evaluators (default: knn,linear,rankme,collapse)",
    )
    ee.add_argument(
        "--eval-opt",
        action="append",
        metavar="EVALUATOR.KEY=VALUE",
        help="evaluator option, e.g. --eval-opt knn.k=10 --eval-opt linear.mode=protocol (repeatable)",
    )
    ee.add_argument("--artifacts", default=None, help="folder for files evaluators write (collapse spectrum)")
    ee.add_argument("--json", action="store_true", help="print one JSON object {evaluator: {metric: value}}")
    ee.set_defaults(func=cmd_eval_embeddings)

    li = sub.add_parser("list", help="list registered methods, evaluators, datasets or backbones", epilog=EPILOG)
    li.add_argument("what", choices=["methods", "evaluators", "datasets", "backbones"])
    li.add_argument("--json", action="store_true", help="print a JSON list of names")
    li.set_defaults(func=cmd_list)

    lb = sub.add_parser(
        "leaderboard",
        help="aggregate result rows into leaderboards/<dataset>.csv/.md",
        description="Aggregate the result rows under RUNS (seeds of one configuration into mean ± 95%% CI) "
        "into OUT/<dataset>.csv (every metric) and .md (the headline metrics and a legend).",
        epilog=EPILOG,
    )
    lb.add_argument("--runs", default="runs", help="runs directory (default: runs/)")
    lb.add_argument("--out", default="leaderboards", help="output directory (default: leaderboards/)")
    lb.add_argument("--dataset", default=None, help="only this dataset")
    lb.add_argument(
        "--readme",
        default=None,
        help="also refresh the <!-- leaderboard:DATASET --> block of this file with the short headline "
        "table (method, backbone, k-NN, linear, 1%%, RankMe, collapse, n)",
    )
    lb.add_argument("--json", action="store_true", help="print one JSON object {written: [files]}")
    lb.set_defaults(func=cmd_leaderboard)
    cp = sub.add_parser(
        "compare",
        help="seed-paired comparison of two methods or run-id prefixes: difference, 95%% CI and p-value per metric",
        epilog=EPILOG,
        description="Pair the seeds that A and B share and print, for every metric both have, "
        "the mean difference A - B, its 95% Student-t confidence interval and the paired t-test "
        "p-value. Refuses runs of different datasets or evaluator settings.",
    )
    cp.add_argument("a", help="a method name or a run-id prefix")
    cp.add_argument("b", help="a method name or a run-id prefix")
    cp.add_argument("--runs", default="runs", help="runs directory (default: runs/)")
    cp.add_argument("--dataset", default=None, help="only rows of this dataset")
    cp.add_argument("--all", action="store_true", help="every metric, not only the headline ones")
    cp.add_argument("--json", action="store_true", help="print one JSON object")
    cp.set_defaults(func=cmd_compare)

    add_board_parser(sub)

    rp = sub.add_parser(
        "report",
        help="one self-contained HTML page: leaderboard + figures",
        epilog=EPILOG,
        description="Write OUT/index.html from the runs under RUNS: the leaderboard table, then "
        "learning curves (with the online k-NN monitor), eigen-spectra, RankMe vs k-NN, PCA "
        "scatters, k-NN precision/recall/F1, reconstruction grids and, for mog2d runs, energy "
        "landscapes and the DSM field with Langevin samples. Images are embedded (no network). "
        "See docs/report.md.",
    )
    rp.add_argument("--runs", default="runs", help="runs directory (default: runs/)")
    rp.add_argument("--out", default="report", help="output directory (default: report/)")
    rp.add_argument("--quiet", action="store_true", help="no per-figure timing on stderr")
    rp.set_defaults(func=cmd_report)
    cc = sub.add_parser(
        "check-collapse",
        help="collapse regression suite: train tiny cases, compare the collapse verdicts with the expected ones",
        epilog=EPILOG,
        description="Run every case x seed of a cases file (default: the built-in facts from "
        "the literature) through the trainer and the collapse evaluator; print a table and "
        "exit 1 when any case disagrees with its expectation. See docs/collapse-ci.md.",
    )
    cc.add_argument(
        "--cases", default=None, help="TOML cases file (default: the built-in ssl_bench/collapse_cases.toml)"
    )
    cc.add_argument(
        "--seeds", default=None, help="seeds for every case, a list or range: 0,1,2 or 0-2 (default: each case's seeds)"
    )
    cc.add_argument("--only", default=None, help="comma-separated case names to run (default: all)")
    cc.add_argument(
        "--keep", default=None, metavar="DIR", help="keep the runs under DIR (default: a temporary directory)"
    )
    cc.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes, one thread each (default: the "
        "number of usable cores, from the CPU affinity and the cgroup CPU quota)",
    )
    cc.add_argument(
        "--quick",
        action="store_true",
        help="the PR-sized check: only the cases marked quick = true "
        "(the built-in file: at least one per method), each on its first seed unless --seeds is given",
    )
    cc.add_argument(
        "--full-budget",
        action="store_true",
        help="train every case for its whole step budget (by "
        "default a collapse case with check_every stops once `settle` checks in a row gave the same "
        "agreeing verdict)",
    )
    cc.add_argument("--json", action="store_true", help="print one JSON object with every case and seed")
    cc.set_defaults(func=cmd_check_collapse)

    from .studies import BUDGETS, DEFAULT_OUT, STUDIES

    st = sub.add_parser(
        "study",
        help="run a study from the literature (RankMe selection, Littwin et al.'s JEPA "
        "vs MAE, the VICReg ablation, the MoG table): a table and figures under --out",
        epilog=EPILOG,
        description="Each study checks a published claim with ssl-bench's own "
        "sweep and evaluators and writes NAME.csv, NAME.md and PNG figures under --out. "
        "--budget tiny runs in seconds (tests, CI); default is the budget of the committed "
        "tables. See docs/studies.md.",
    )
    ssub = st.add_subparsers(dest="study", metavar="STUDY", parser_class=_Parser)
    ssub.required = True
    for name in sorted(STUDIES):
        spec = STUDIES[name]
        sp = ssub.add_parser(name, help=spec.help, description=spec.description.split("\n\n")[0], epilog=EPILOG)
        sp.add_argument("--out", default=DEFAULT_OUT, help=f"where the table and figures go (default: {DEFAULT_OUT}/)")
        sp.add_argument(
            "--budget",
            default="default",
            choices=BUDGETS,
            help="tiny: seconds, for tests and CI; default: the budget of the committed table",
        )
        sp.add_argument(
            "--runs",
            default=None,
            help="where trained runs go (default: runs/studies/NAME, or "
            "OUT/runs/NAME with another --out; an existing run is resumed, not retrained)",
        )
        sp.add_argument(
            "--threads",
            type=int,
            default=None,
            help="torch threads of every training and evaluation "
            "(default: torch's; 1 is faster on a CPU that other jobs share)",
        )
        spec.add_arguments(sp)
        sp.set_defaults(func=cmd_study)

    se = sub.add_parser(
        "select",
        help="pick each method's configuration by a label-free score (RankMe, LiDAR, "
        "alpha-ReQ) from the runs of a sweep",
        epilog=EPILOG,
        description="Group the result rows under RUNS by method and training configuration "
        "(seeds averaged) and pick, per method, the configuration with the highest RankMe or "
        "LiDAR, or the alpha-ReQ closest to 1. No label is used. See docs/studies.md.",
    )
    se.add_argument("--runs", default="runs", help="runs directory (default: runs/)")
    se.add_argument(
        "--by", default="rankme", choices=["rankme", "lidar", "alpha-req"], help="the score (default: rankme)"
    )
    se.add_argument("--dataset", default=None, help="only rows of this dataset")
    se.add_argument("--json", action="store_true", help="print one JSON object")
    se.set_defaults(func=cmd_select)
    return p


#: Exceptions the CLI turns into one line and exit status 2 (besides every SSLBenchError):
#: file-system faults, truncated and undecodable files, linear algebra on degenerate input.
def _user_errors() -> tuple[type[BaseException], ...]:
    import pickle
    import zlib

    errs: list[type[BaseException]] = [OSError, EOFError, UnicodeError, pickle.UnpicklingError, zlib.error, MemoryError]
    for mod, name in (
        ("numpy.linalg", "LinAlgError"),
        ("torch._C", "_LinAlgError"),
        ("json", "JSONDecodeError"),
        ("yaml", "YAMLError"),
        ("gzip", "BadGzipFile"),
        ("PIL", "UnidentifiedImageError"),
        ("safetensors", "SafetensorError"),
    ):
        m = sys.modules.get(mod)  # only what is already imported: an error path must not import torch
        obj = getattr(m, name, None) if m is not None else None
        if isinstance(obj, type) and issubclass(obj, BaseException):
            errs.append(obj)
    return tuple(errs)


def _one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, with the exception's name when the
    message alone would not say what went wrong (an OSError names its file)."""
    text = " ".join(str(exc).split()) if not isinstance(exc, SSLBenchError) else str(exc).strip()
    if isinstance(exc, OSError) and exc.filename is not None:
        why = exc.strerror or type(exc).__name__
        target = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
        text = f"{target}: {why}"
    elif isinstance(exc, MemoryError):
        text = "out of memory" + (f" ({text})" if text else "")
    elif not isinstance(exc, SSLBenchError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines) if lines else type(exc).__name__


def _want_traceback(argv: list[str]) -> bool:
    return "--traceback" in argv or os.environ.get("SSL_BENCH_TRACEBACK", "").strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
    )


def _silence_broken_pipe() -> None:
    """stdout went to a closed pipe (``| head``): exit quietly, without Python's own complaint
    about flushing stdout at shutdown."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    import signal

    if hasattr(signal, "SIGXFSZ"):  # a file-size limit (ulimit -f) becomes an OSError, not a kill
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass
    argv = list(sys.argv[1:] if argv is None else argv)
    show_tb = _want_traceback(argv)
    argv = [x for x in argv if x != "--traceback"]
    parser = build_parser()
    a = parser.parse_args(argv)
    a.argv = argv  # the command as typed (a study writes it into its table)
    if getattr(a, "seed", None) is not None:
        a.sets = (a.sets or []) + [f"seed={a.seed}"]
    try:
        from . import threads

        threads.configure()  # $SSL_BENCH_THREADS: a fixed count (default) or the opt-in fair share
        from . import console

        console.configure(quiet=bool(getattr(a, "quiet", False) or getattr(a, "json", False)))
        rc = int(a.func(a) or 0)
        sys.stdout.flush()
        return rc
    except KeyboardInterrupt:
        print("ssl-bench: interrupted (checkpoints written so far are kept; use --resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_broken_pipe()
        return 0
    except BaseException as exc:  # the one error boundary
        if isinstance(exc, SystemExit):
            raise
        if show_tb or not isinstance(exc, (SSLBenchError, *_user_errors())):
            raise
        code = int(getattr(exc, "exit_code", 2))  # 1: finished, but a run or check failed (errors.RunsFailed)
        print(f"ssl-bench: {'error' if code == 2 else 'failed'}: {_one_line(exc)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
