"""``ssl-bench board``: a board's table made from its spec and its committed rows.

``ssl-bench board NAME`` (a built-in spec, :mod:`ssl_bench.boardspec`) or ``--spec FILE`` plans the
(method, backbone, seed) runs of the board, trains and evaluates only those whose rows are missing
from ``leaderboards/NAME-rows/`` (``--refresh``: also the stale ones, trained under another recipe),
computes the missing reference rows (pixels, random-init), and rebuilds
``leaderboards/NAME.{csv,md}`` from the rows with the code of ``ssl-bench leaderboard``.

* ``--jobs 1`` without ``--deadline``: runs train one after the other in this process.
* ``--jobs N`` or ``--deadline T``: each run is a child process (``ssl-bench board ... --only I``),
  N at once on the one device (small models leave a GPU mostly idle). Under a deadline no run
  starts whose expected time (its method's ``train_seconds`` in the rows) would overrun it, and a
  run still going at the deadline is stopped: its checkpoints and resume state stay under
  ``--out``, so the next call continues it.

Checkpoints go to ``OUT/NAME/r<recipe hash>/<run id>/``: a run trained under another recipe never
resumes into one of today's.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .boardspec import BoardSpec, PlannedRun, builtin_names, load_spec, plan, run_configs
from .config import RunConfig
from .errors import ConfigError, SSLBenchError
from .results import compact_file, find_result_files, read_rows


@dataclasses.dataclass(frozen=True)
class Options:
    leaderboards: Path = Path("leaderboards")
    out: Path = Path("runs") / "board"
    dry_run: bool = False
    table_only: bool = False
    refresh: bool = False
    jobs: int = 1
    deadline: float | None = None  # seconds from the start of the call
    device: str | None = None
    readme: Path | None = None
    progress: bool = True
    only: int | None = None  # child process: train only run number ONLY of the plan


def log(msg: str) -> None:
    print(msg, flush=True)


def rows_dir(spec: BoardSpec, leaderboards: Path) -> Path:
    return Path(leaderboards) / f"{spec.name}-rows"


def board_command(spec: BoardSpec) -> str:
    """The command that rebuilds the board, named in its table's header."""
    return (
        f"ssl-bench board {spec.name}"
        if spec.source == f"{spec.name}.toml"
        else f"ssl-bench board --spec {spec.source}"
    )


# -- the table ----------------------------------------------------------------------------------------
def rebuild_table(spec: BoardSpec, opts: Options) -> list[Path]:
    """``leaderboards/NAME.{csv,md}`` from the rows folder (and the README block, with --readme)."""
    from .checkpoint import atomic_write_text
    from .headline import headline_for
    from .leaderboard import update_readme, write_leaderboards

    rdir = rows_dir(spec, opts.leaderboards)
    with tempfile.TemporaryDirectory() as tmp:
        written = write_leaderboards(rdir, Path(tmp), [spec.dataset], command=board_command(spec))
        if not written:
            raise SSLBenchError(f"board {spec.name}: no rows of {spec.dataset} in {rdir}")
        out = []
        for p in written:
            dest = Path(opts.leaderboards) / f"{spec.name}{p.suffix}"
            text = p.read_text()
            if spec.note and p.suffix == ".md":
                text = text.rstrip("\n") + f"\n\n**Note.** {spec.note}\n"
            atomic_write_text(dest, text)
            out.append(dest)
    if opts.readme is not None:  # the short headline table of the board's csv
        render = headline_for(f"{board_command(spec)} --table-only --readme {opts.readme}")
        md = Path(opts.leaderboards) / f"{spec.name}.md"
        if not update_readme(opts.readme, spec.dataset, render(md)):
            raise ConfigError(f"{opts.readme} has no <!-- leaderboard:{spec.dataset} --> block")
        out.append(opts.readme)
    return out


# -- planning -----------------------------------------------------------------------------------------
class _Kind:
    """The data kind of the board's dataset: the spec's ``kind``, else read from the data (once)."""

    def __init__(self, spec: BoardSpec) -> None:
        self.spec, self.value = spec, spec.kind
        self.data: Any = None

    def load(self) -> Any:
        from .build import load_data

        if self.data is None:
            base = RunConfig.from_dict(
                {**self.spec.overrides, "dataset": self.spec.dataset, "preset": self.spec.preset}
            )
            self.data = load_data(base)
            self.value = self.data.kind
        return self.data

    def get(self) -> str:
        if self.value is None:
            self.load()
        assert self.value is not None
        return self.value


def board_configs(spec: BoardSpec, kind: _Kind) -> list[RunConfig]:
    """The spec's run configs; ``"all"`` expands to the methods that train on the dataset's kind."""
    from .build import select_methods

    uses_all = any(e.method == "all" for e in spec.entries)
    return run_configs(spec, select_methods("all", spec.dataset, kind.get())[0] if uses_all else None)


def reference_config(spec: BoardSpec, seed: int, backbone: str) -> RunConfig:
    return RunConfig.from_dict(
        {
            **spec.overrides,
            "dataset": spec.dataset,
            "preset": spec.preset,
            "seed": seed,
            "backbone": backbone,
            "evaluators": list(spec.evaluators),
            "progress": False,
        }
    )


def missing_references(
    spec: BoardSpec, configs: list[RunConfig], rows: list[dict], kind: _Kind, refresh: bool = False
) -> list[tuple]:
    """[(reference config, methods)] whose pixels / random-init rows the rows folder lacks; with
    ``refresh``, random-init rows whose BN statistics were never recalibrated count as missing. A
    random-init row written before its backbone had a name (``timm:vit_tiny_patch16_224`` for
    ``vit-mini``, :data:`ssl_bench.backbones.LEGACY_NAMES`) is the reference of that backbone."""
    from .backbones import real_backbone_name
    from .leaderboard import reference_label
    from .pipeline import baseline_backbones

    if not spec.references:
        return []
    have = set()
    for r in rows:
        method, backbone = str(r.get("method")), str(r.get("backbone"))
        if r.get("status", "ok") != "ok" or (refresh and reference_label(method, backbone, r.get("config"))):
            continue
        have.add(r["run_id"])
        real = real_backbone_name(method, backbone, r.get("config"))
        if method == "random-init" and real != backbone:  # the run id it would have today
            old, new = (x.replace(":", "-").replace("/", "-") for x in (backbone, real))
            have.add(str(r["run_id"]).replace(f"-random-init-{old}-", f"-random-init-{new}-", 1))
    out = []
    for seed in sorted({c.seed for c in configs}):
        for bb in sorted({c.backbone for c in configs if c.seed == seed}):
            methods = sorted({c.method for c in configs if c.seed == seed and c.backbone == bb})
            ref = reference_config(spec, seed, bb)
            need = []
            if "pixels" in spec.references:
                need.append(f"{spec.dataset}-pixels-{spec.preset}-s{seed}")
            if "random-init" in spec.references:
                for name, _ in baseline_backbones(ref.with_preset(), kind.get(), methods):
                    tag = name.replace(":", "-").replace("/", "-")
                    need.append(f"{spec.dataset}-random-init-{tag}-{spec.preset}-s{seed}")
            if not set(need) <= have:
                out.append((ref, methods))
    return out


def describe(planned: list[PlannedRun], refs: list[tuple], refresh: bool) -> list[str]:
    """The plan, one line per run to train or stale, and a summary line."""
    lines = []
    for p in planned:
        if p.state == "missing":
            lines.append(f"  train    {p.label}")
        elif p.state == "stale":
            what = "retrain" if refresh else "STALE  "
            lines.append(f"  {what}  {p.label}: its rows ({p.run_id}) were trained under another recipe")
    for ref, _ in refs:
        lines.append(f"  refs     pixels, random-init seed {ref.seed} ({ref.backbone})")
    n = {s: sum(p.state == s for p in planned) for s in ("done", "missing", "stale")}
    unknown = sum(p.state == "done" and not p.recipe_known for p in planned)
    summary = f"{len(planned)} runs: {n['done']} done, {n['missing']} to train, {n['stale']} stale"
    if unknown:
        summary += f" ({unknown} done rows predate recipe digests: recipe unknown, schema < 3)"
    if n["stale"] and not refresh:
        summary += "; --refresh retrains the stale ones"
    return lines + [summary]


# -- running ------------------------------------------------------------------------------------------
def run_out(spec: BoardSpec, cfg: RunConfig, kind: str, out: Path) -> Path:
    """Where a run's checkpoints go: one folder per recipe, so a run never resumes another recipe's."""
    from .build import backbone_choice
    from .recipe import resolved_recipe_hash

    return Path(out) / spec.name / f"r{resolved_recipe_hash(cfg, backbone_choice(cfg, kind)[0])}"


def save_board_rows(rdir: Path, run_id: str, rows: list[dict], run_dir: Path | None = None) -> None:
    """The rows of one run in the rows folder, replacing what was there (a stale run's rows), with
    the run's curves when ``run_dir`` has them: ``train_log.csv`` (loss and monitor per epoch) and
    ``monitor.csv`` (``seconds,step,epoch,knn,heldout`` per monitor check: time to accuracy)."""
    from .checkpoint import atomic_write_text
    from .results import _dumps, compact_lines

    folder = rdir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "results.jsonl", _dumps(compact_lines(rows)))
    for name in ("train_log.csv", "monitor.csv"):
        if run_dir is not None and (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, folder / name)


def train_one(spec: BoardSpec, cfg: RunConfig, opts: Options, kind: _Kind) -> str:
    """Train (resuming a stopped run), evaluate, and put the rows in the rows folder."""
    from .pipeline import evaluate_checkpoint
    from .trainer import train

    data = kind.load()
    if opts.device:
        cfg = dataclasses.replace(cfg, device=opts.device)
    t0 = time.perf_counter()
    res = train(cfg, run_out(spec, cfg, data.kind, opts.out), resume=True, data=data)
    rows = evaluate_checkpoint(res.checkpoint, list(spec.evaluators), device=cfg.device, data=data)
    run_id = rows[0]["run_id"]
    save_board_rows(rows_dir(spec, opts.leaderboards), run_id, rows, res.run_dir)
    return f"done in {time.perf_counter() - t0:.0f}s ({len(rows)} rows, {run_id})"


def run_references(spec: BoardSpec, refs: list[tuple], opts: Options, kind: _Kind) -> None:
    from .pipeline import evaluate_baselines
    from .registry import EVALUATORS

    for ref, methods in refs:
        if opts.device:
            ref = dataclasses.replace(ref, device=opts.device)
        log(f"[board] references seed {ref.seed} ({ref.backbone}): pixels, random-init")
        rows = evaluate_baselines(
            ref,
            Path(opts.out) / spec.name / "references",
            kind.load(),
            EVALUATORS.resolve(list(spec.evaluators)),
            methods,
        )
        for run_id in sorted({r["run_id"] for r in rows}):
            name = next(r["method"] for r in rows if r["run_id"] == run_id)
            if name in spec.references:
                save_board_rows(rows_dir(spec, opts.leaderboards), run_id, [r for r in rows if r["run_id"] == run_id])


def _failure(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return text if isinstance(exc, SSLBenchError) else f"{type(exc).__name__}: {text}"


def run_in_process(spec: BoardSpec, todo: list[tuple[int, PlannedRun]], opts: Options, kind: _Kind, bar: Any) -> int:
    """Train the runs one after the other here; the number that failed."""
    failed = 0
    for _, p in todo:
        bar.set_postfix_str(p.label)
        try:
            msg = train_one(spec, p.cfg, opts, kind)
        except (OSError, KeyboardInterrupt):
            raise  # a full disk or an interrupt stops the board; rows already written stay
        except Exception as exc:  # noqa: BLE001 -- one failed run must not stop the others
            failed += 1
            msg = f"FAILED: {_failure(exc)}"
        bar.write(f"[board] {p.label}: {msg}", file=sys.stdout) if not bar.disable else log(f"[board] {p.label}: {msg}")
        bar.update(1)
    return failed


def _child_argv(spec: BoardSpec, index: int, opts: Options) -> list[str]:
    which = [spec.name] if spec.source == f"{spec.name}.toml" else ["--spec", str(Path(spec.source).resolve())]
    argv = [sys.executable, "-m", "ssl_bench", "board", *which, "--only", str(index), "--no-progress"]
    argv += ["--out", str(Path(opts.out).resolve()), "--leaderboards", str(Path(opts.leaderboards).resolve())]
    return argv + (["--device", opts.device] if opts.device else []) + (["--refresh"] if opts.refresh else [])


def _estimates(rows: list[dict]) -> dict[tuple, float]:
    """{(method, backbone, preset, epochs): median training seconds} of the board's ok runs."""
    per: dict[tuple, dict[str, float]] = {}
    for r in rows:
        if r.get("status", "ok") == "ok" and r.get("train_seconds"):
            key = (r["method"], (r.get("config") or {}).get("backbone"), r.get("preset"), r.get("epochs"))
            per.setdefault(key, {})[r["run_id"]] = float(r["train_seconds"])
    return {k: statistics.median(v.values()) for k, v in per.items()}


def _stop(proc: subprocess.Popen) -> None:
    """End a child and its process group (SIGTERM, then SIGKILL after 10 s)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_children(
    spec: BoardSpec, todo: list[tuple[int, PlannedRun]], opts: Options, estimates: dict[tuple, float], bar: Any
) -> tuple[int, int]:
    """Train the runs as child processes, ``opts.jobs`` at once, within the deadline; (failed,
    stopped or not started)."""
    t0 = time.monotonic()

    def left() -> float:
        return float("inf") if opts.deadline is None else opts.deadline - (time.monotonic() - t0)

    logs = Path(opts.out) / spec.name / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    queue, failed, cut = list(todo), 0, 0
    running: dict[subprocess.Popen, tuple[PlannedRun, float, Path]] = {}
    say: Callable[[str], None] = log if bar.disable else (lambda m: bar.write(m, file=sys.stdout))
    while queue or running:
        while queue and len(running) < max(1, opts.jobs):
            i, p = queue.pop(0)
            c = p.cfg.with_preset()
            need = estimates.get((c.method, c.backbone, c.preset, c.epochs))
            if need is not None and need * 1.2 > left():
                say(f"[board] {p.label}: NOT STARTED (about {need:.0f}s, {max(left(), 0):.0f}s left)")
                cut += 1
                bar.update(1)
                continue
            with open(logs / f"run-{i}.log", "w") as fh:  # the child keeps its own copy of the handle
                proc = subprocess.Popen(
                    _child_argv(spec, i, opts), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
                )
            running[proc] = (p, time.monotonic(), logs / f"run-{i}.log")
        time.sleep(0.2)
        for proc in list(running):
            p, started, log_path = running[proc]
            if proc.poll() is None and left() > 0:
                continue
            if proc.poll() is None:
                _stop(proc)
                say(f"[board] {p.label}: STOPPED at the deadline after {time.monotonic() - started:.0f}s (resumable)")
                cut += 1
            else:
                out = log_path.read_text(errors="replace").strip().splitlines()
                failed += proc.returncode != 0
                last = out[-1] if out else f"exit status {proc.returncode}"
                say(f"[board] {p.label}: {last}" + ("" if proc.returncode == 0 else f" (log: {log_path})"))
            del running[proc]
            bar.update(1)
    return failed, cut


# -- the command --------------------------------------------------------------------------------------
def list_boards() -> str:
    lines = []
    for name in builtin_names():
        spec = load_spec(name)
        lines.append(f"{name:40s} {spec.description}")
    return "\n".join(lines)


def compact_rows(spec: BoardSpec, opts: Options) -> str:
    """Rewrite every results file of the board's rows folder in the compact layout."""
    rdir = rows_dir(spec, opts.leaderboards)
    files = find_result_files(rdir)
    if not files:
        raise ConfigError(f"board {spec.name}: no rows in {rdir}")
    before = after = 0
    for f in files:
        b, a = compact_file(f)
        before, after = before + b, after + a
    return f"{rdir}: {len(files)} results files, {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB"


def run_board(spec: BoardSpec, opts: Options) -> int:
    """Plan, train what is missing (or stale, with refresh), rebuild the table; the exit status."""
    rdir = rows_dir(spec, opts.leaderboards)
    if opts.table_only:
        if not rdir.is_dir():
            raise ConfigError(f"board {spec.name}: no rows folder {rdir}")
        log("wrote " + ", ".join(str(p) for p in rebuild_table(spec, opts)))
        return 0
    kind = _Kind(spec)
    rows = read_rows(find_result_files(rdir)) if rdir.is_dir() else []
    configs = board_configs(spec, kind)
    planned = plan(spec, rows, configs)
    if opts.only is not None:  # a child process: one run of the plan
        if not 0 <= opts.only < len(planned):
            raise ConfigError(f"--only {opts.only}: the plan has {len(planned)} runs")
        log(train_one(spec, planned[opts.only].cfg, opts, kind))
        return 0
    refs = missing_references(spec, configs, rows, kind, opts.refresh)
    log(f"board {spec.name} ({spec.source}):")
    for line in describe(planned, refs, opts.refresh):
        log(line)
    if opts.dry_run:
        return 0
    todo = [(i, p) for i, p in enumerate(planned) if p.state == "missing" or (opts.refresh and p.state == "stale")]
    if not todo and not refs:
        log(f"nothing to train: every run of board {spec.name} has its rows")
    failed = cut = 0
    if todo:
        from .pipeline import sweep_progress

        bar = sweep_progress(len(todo), f"board {spec.name}", opts.progress)
        try:
            if opts.jobs <= 1 and opts.deadline is None:
                failed = run_in_process(spec, todo, opts, kind, bar)
            else:
                failed, cut = run_children(spec, todo, opts, _estimates(rows), bar)
        finally:
            bar.close()
    if refs:
        run_references(spec, refs, opts, kind)
    if any(rdir.glob("*/results.jsonl")):
        log("wrote " + ", ".join(str(p) for p in rebuild_table(spec, opts)))
    if failed or cut:
        log(f"board {spec.name}: {failed} run(s) failed, {cut} stopped or not started: call again to go on")
    return 1 if failed or cut else 0


def parse_deadline(text: str | None) -> float | None:
    """Seconds from ``540``, ``540s``, ``9m`` or ``1.5h``."""
    if text is None:
        return None
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    try:
        v = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise ConfigError(f"--deadline {text!r}: give seconds (540), or 540s, 9m, 1.5h") from None
    if not v > 0:
        raise ConfigError(f"--deadline {text!r} must be positive")
    return v
