"""Grow the reference leaderboard ``leaderboards/<dataset>-<preset>.{csv,md}`` (default:
fashion-mnist, ``standard`` preset), resumable, on CPU or on one GPU.

* CPU (2 cores): one training at a time (two torch processes on 2 cores slow each other down many
  times over), in the background, so the board grows run by run::

      nohup .venv/bin/python scripts/standard_board.py > runs/standard-board.log 2>&1 &

* One GPU: several trainings at once on the same device (small models leave it mostly idle)::

      .venv/bin/python scripts/standard_board.py --methods all --jobs 8 --device cuda

  ``scripts/gpu_board.sh`` runs the whole GPU programme (this board for all methods, then the quick
  board with 3 seeds) inside a fixed time budget: ``--stop-at`` (a Unix time) starts no run that
  could not finish, ends trainings still running then, and rebuilds the table from what finished.

Each (method, seed) is trained with ``ssl-bench train --resume`` (a half-trained run continues
from its last epoch), evaluated with ``ssl-bench eval``, and its result rows are copied to
``leaderboards/<board>-rows/<run_id>/results.jsonl`` with the run's ``train_log.csv`` (loss and
k-NN monitor per epoch: what the curve was still doing) beside them (committed, so the board can grow
across machines and sessions: a (method, seed) with successful rows there is not trained again,
unless ``--force``). ``<board>`` is ``<dataset>-<preset>``
unless ``--board`` names it. The ``pixels`` and ``random-init``
reference rows are computed once per seed. The table is then rebuilt from the committed rows
with the same code as ``ssl-bench leaderboard``; ``--table-only`` does only that (e.g. after rows
from another machine were copied in: it starts no training, whatever rows are missing).
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST = ["simclr", "vicreg", "barlow-twins", "byol"]  # the board's minimum on CPU, in this order


def log(msg: str) -> None:
    sys.stdout.write(f"[{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}] {msg}\n")  # one write: threads do not interleave
    sys.stdout.flush()


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line of a killed writer
            continue
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    from ssl_bench.checkpoint import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def run_dir(out: Path, dataset: str, method: str, preset: str, seed: int) -> Path | None:
    """The newest run folder of (method, seed); its config.json decides (``jepa-*`` also matches jepa-masked)."""
    def ours(p: Path) -> bool:
        try:
            return json.loads((p / "config.json").read_text()).get("method") == method
        except (OSError, ValueError):
            return False

    cands = sorted((p for p in out.glob(f"{dataset}-{method}-*-{preset}-s{seed}-*") if ours(p)),
                   key=lambda p: p.stat().st_mtime)
    return cands[-1] if cands else None


def has_rows(rows_dir: Path, method: str, preset: str, seed: int, backbone: str | None) -> bool:
    """Whether the board's rows folder already holds a successful run of (method, preset, seed) (on
    ``backbone`` when one is named), from any machine: such a run is not trained again."""
    for f in rows_dir.glob("*/results.jsonl"):
        with f.open() as fh:  # the first row names the run; the rest (about 56 per run) is not read
            try:
                first = json.loads(fh.readline() or "null")
            except json.JSONDecodeError:
                first = None
        if (first and first.get("method") == method and first.get("preset") == preset and first.get("seed") == seed
                and first.get("status", "ok") == "ok" and (backbone is None or first.get("backbone") == backbone)):
            return True
    return False


def left(a) -> float | None:
    """Seconds to ``--stop-at``; None without one."""
    return None if a.stop_at is None else a.stop_at - time.time()


def step(cmd: list[str], a) -> subprocess.CompletedProcess | None:
    """Run one ssl-bench command; None when ``--stop-at`` came first (the process is ended)."""
    t = left(a)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=None if t is None else max(t, 1.0))
    except subprocess.TimeoutExpired:
        return None


def train_and_eval(a, method: str, seed: int, rows_dir: Path) -> str:
    t = left(a)
    if t is not None and t < a.min_left:
        return f"{method} seed {seed}: NOT STARTED ({t:.0f}s left before --stop-at, --min-left {a.min_left:.0f})"
    cli = shlex.split(a.ssl_bench)
    common = ["--dataset", a.dataset, "--preset", a.preset, "--seed", str(seed), "--out", str(a.out),
              "--no-progress", *a.extra]
    if a.device:
        common += ["--device", a.device]
    if a.backbone:
        common += ["--backbone", a.backbone]
    t0 = time.time()
    if a.one_process:  # `ssl-bench run`: train and evaluate in one process (one torch start-up, not two)
        log(f"{method} seed {seed}: training and evaluating")
        lb = a.out / ".tables" / f"{method}-s{seed}"  # run's own tables, unused: the board is rebuilt below
        rest = [x for i, x in enumerate(common) if x != "--seed" and (i == 0 or common[i - 1] != "--seed")]
        r = step(cli + ["run", "--methods", method, "--seeds", f"{seed},", "--no-baselines", "--no-report",
                        "--leaderboards", str(lb)] + rest, a)
        if r is None:
            return f"{method} seed {seed}: STOPPED at --stop-at after {time.time() - t0:.0f}s"
        if r.returncode != 0:
            return f"{method} seed {seed}: run FAILED: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
        rd = run_dir(a.out, a.dataset, method, a.preset, seed)
        if rd is None:
            return f"{method} seed {seed}: run FAILED: no run folder in {a.out}"
        return collect(rd, rows_dir, t0, method, seed)
    log(f"{method} seed {seed}: training")
    r = step(cli + ["train", "--method", method, "--resume"] + common, a)
    if r is None:
        return f"{method} seed {seed}: training STOPPED at --stop-at after {time.time() - t0:.0f}s"
    if r.returncode != 0:
        return f"{method} seed {seed}: training FAILED: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    rd = run_dir(a.out, a.dataset, method, a.preset, seed)
    ckpts = sorted((rd / "checkpoints").glob("epoch_*.safetensors"), key=lambda p: int(p.stem.split("_")[1]))
    log(f"{method} seed {seed}: trained ({time.time() - t0:.0f}s); evaluating {ckpts[-1].name}")
    ev = ["eval", str(ckpts[-1])] + (["--device", a.device] if a.device else [])
    r = step(cli + ev, a)
    if r is None:
        return f"{method} seed {seed}: eval STOPPED at --stop-at"
    if r.returncode != 0:
        return f"{method} seed {seed}: eval FAILED: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    return collect(rd, rows_dir, t0, method, seed)


def collect(rd: Path, rows_dir: Path, t0: float, method: str, seed: int) -> str:
    """Copy a finished run's result rows and training log into the board's rows folder."""
    mine = [row for row in read_rows(rd / "results.jsonl") if row.get("run_id") == rd.name]
    if not mine:
        return f"{method} seed {seed}: eval FAILED: no result rows in {rd}"
    write_rows(rows_dir / rd.name / "results.jsonl", mine)
    if (rd / "train_log.csv").is_file():
        shutil.copyfile(rd / "train_log.csv", rows_dir / rd.name / "train_log.csv")
    return f"{method} seed {seed}: done in {time.time() - t0:.0f}s ({len(mine)} rows)"


def baselines(a, seed: int, methods: list[str], rows_dir: Path) -> None:
    """pixels and random-init rows for ``seed``: computed unless the marker file says that every
    backbone ``methods`` train already has its random-init row."""
    from ssl_bench.build import load_data
    from ssl_bench.config import RunConfig
    from ssl_bench.pipeline import baseline_backbones, evaluate_baselines
    from ssl_bench.registry import EVALUATORS

    cfg = RunConfig(dataset=a.dataset, preset=a.preset, seed=seed, device=a.device or "auto", progress=False,
                    backbone=a.backbone or "auto")
    data = load_data(cfg)
    need = sorted({bb for bb, _ in baseline_backbones(cfg.with_preset(), data.kind, methods)})
    done = rows_dir / f".baselines-s{seed}"
    try:
        marker = json.loads(done.read_text())
        if set(need) <= set(marker["backbones"]) and marker.get("bn_stats") == "train":  # rows from before #34: redo
            return
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    log(f"baselines seed {seed}: pixels, random-init of {', '.join(need)}")
    rows = evaluate_baselines(cfg, a.out, data, EVALUATORS.resolve(cfg.evaluators), methods)
    run_ids = sorted({r["run_id"] for r in rows})
    for run_id in run_ids:
        write_rows(rows_dir / run_id / "results.jsonl", [r for r in rows if r["run_id"] == run_id])
    done.write_text(json.dumps({"backbones": need, "run_ids": run_ids, "bn_stats": "train"}) + "\n")


def all_baselines(a, seeds: list[int], methods: list[str], rows_dir: Path) -> str:
    try:
        for seed in seeds:
            baselines(a, seed, methods, rows_dir)
    except Exception as e:  # noqa: BLE001 -- a failed reference row must not stop the trainings
        return f"baselines: FAILED: {type(e).__name__}: {e}"
    return "baselines: done in (pixels, random-init)"


def rebuild_board(a, rows_dir: Path) -> list[Path]:
    from ssl_bench.checkpoint import atomic_write
    from ssl_bench.leaderboard import write_leaderboards

    with tempfile.TemporaryDirectory() as tmp:
        written = write_leaderboards(rows_dir, Path(tmp), [a.dataset],
                                     command=a.command)
        out = []
        for p in written:
            dest = a.leaderboards / f"{a.board}{p.suffix}"
            data = p.read_bytes()
            atomic_write(dest, lambda tmp, data=data: Path(tmp).write_bytes(data))  # phases may rebuild at once
            out.append(dest)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(FIRST), help="comma-separated, or 'all' (default: %(default)s)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    ap.add_argument("--jobs", type=int, default=1, help="trainings at once (1 on CPU; 5-8 on one GPU)")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: auto)")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "standard", help="runs directory (checkpoints)")
    ap.add_argument("--ssl-bench", default=str(Path(sys.executable).parent / "ssl-bench"),
                    help="the ssl-bench command, split like a shell line (default: %(default)s)")
    ap.add_argument("--board", default=None, help="table name: leaderboards/BOARD.{csv,md} and BOARD-rows/ "
                    "(default: DATASET-PRESET)")
    ap.add_argument("--stop-at", type=float, default=None, help="Unix time: no run starts after it less "
                    "--min-left, and trainings or evaluations still running then are ended")
    ap.add_argument("--min-left", type=float, default=60.0, help="seconds before --stop-at under which no "
                    "run starts (default: %(default)s)")
    ap.add_argument("--backbone", default=None, help="every method's backbone, and random-init's (default: auto)")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--force", action="store_true", help="train (method, seed) again even when the board has its rows")
    ap.add_argument("--generated-by", default=None, help="the command the table's header names (default: this one)")
    ap.add_argument("--one-process", action="store_true", help="train and evaluate each run in one `ssl-bench run` "
                    "process (no --resume: for short runs, e.g. on a GPU)")
    ap.add_argument("--table-only", action="store_true", help="only rebuild the table from the rows "
                    "folder: train and evaluate nothing")
    ap.add_argument("--leaderboards", type=Path, default=ROOT / "leaderboards",
                    help="where the table and its rows folder go (default: leaderboards/)")
    ap.add_argument("extra", nargs="*", help="extra flags for `ssl-bench train` after --, e.g. -- --set precision=fp32")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from ssl_bench.registry import METHODS

    methods = METHODS.resolve(a.methods) if a.methods != "all" else FIRST + [m for m in METHODS.names() if m not in FIRST]
    seeds = [int(s) for s in a.seeds.split(",")]
    a.board = a.board or f"{a.dataset}-{a.preset}"
    a.command = a.generated_by or "python scripts/standard_board.py " + " ".join(
        shlex.quote(x) for x in (argv or sys.argv[1:]))
    rows_dir = a.leaderboards / f"{a.board}-rows"
    if a.table_only:
        if not rows_dir.is_dir():
            print(f"standard_board: no rows folder {rows_dir}", file=sys.stderr)
            return 2
        log("board: " + ", ".join(str(p) for p in rebuild_board(a, rows_dir)))
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    todo = []
    for seed in seeds:
        for m in methods:
            if not a.force and has_rows(rows_dir, m, a.preset, seed, a.backbone):
                log(f"{m} seed {seed}: rows exist, skipped")
                continue
            todo.append((m, seed))
    failed = 0
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        # the reference rows run beside the trainings (on a GPU they would otherwise leave it idle)
        jobs = [] if a.no_baselines else [pool.submit(all_baselines, a, seeds, methods, rows_dir)]
        jobs += [pool.submit(train_and_eval, a, m, seed, rows_dir) for m, seed in todo]
        for fut in as_completed(jobs):
            msg = fut.result()
            log(msg)
            failed += "done in" not in msg
            if "done in" in msg:
                log("board: " + ", ".join(str(p) for p in rebuild_board(a, rows_dir)))
    log("board: " + ", ".join(str(p) for p in rebuild_board(a, rows_dir)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
