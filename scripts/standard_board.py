"""Grow the reference leaderboard ``leaderboards/<dataset>-<preset>.{csv,md}`` (default:
fashion-mnist, ``standard`` preset), resumable, on CPU or on one GPU.

* CPU (2 cores): one training at a time (two torch processes on 2 cores slow each other down many
  times over), in the background, so the board grows run by run::

      nohup .venv/bin/python scripts/standard_board.py > runs/standard-board.log 2>&1 &

* One GPU: several trainings at once on the same device (small models leave it mostly idle)::

      .venv/bin/python scripts/standard_board.py --methods all --jobs 7 --device cuda

Each (method, seed) is trained with ``ssl-bench train --resume`` (a half-trained run continues
from its last epoch), evaluated with ``ssl-bench eval``, and its result rows are copied to
``leaderboards/<dataset>-<preset>-rows/<run_id>/results.jsonl`` (committed, so the board can grow across
machines and sessions; a run with rows there is skipped). The ``pixels`` and ``random-init``
reference rows are computed once per seed. The table is then rebuilt from the committed rows
with the same code as ``ssl-bench leaderboard``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST = ["simclr", "vicreg", "barlow-twins", "byol"]  # the board's minimum on CPU, in this order


def log(msg: str) -> None:
    print(f"[{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}] {msg}", flush=True)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    os.replace(tmp, path)


def run_dir(out: Path, dataset: str, method: str, preset: str, seed: int) -> Path | None:
    cands = sorted(out.glob(f"{dataset}-{method}-*-{preset}-s{seed}-*"), key=lambda p: p.stat().st_mtime)
    return cands[-1] if cands else None


def train_and_eval(a, method: str, seed: int, rows_dir: Path) -> str:
    cli = [a.ssl_bench]
    common = ["--dataset", a.dataset, "--preset", a.preset, "--seed", str(seed), "--out", str(a.out),
              "--no-progress", *a.extra]
    if a.device:
        common += ["--device", a.device]
    t0 = time.time()
    log(f"{method} seed {seed}: training")
    r = subprocess.run(cli + ["train", "--method", method, "--resume"] + common, capture_output=True, text=True)
    if r.returncode != 0:
        return f"{method} seed {seed}: training FAILED: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    rd = run_dir(a.out, a.dataset, method, a.preset, seed)
    ckpts = sorted((rd / "checkpoints").glob("epoch_*.safetensors"), key=lambda p: int(p.stem.split("_")[1]))
    log(f"{method} seed {seed}: trained ({time.time() - t0:.0f}s); evaluating {ckpts[-1].name}")
    ev = ["eval", str(ckpts[-1])] + (["--device", a.device] if a.device else [])
    r = subprocess.run(cli + ev, capture_output=True, text=True)
    if r.returncode != 0:
        return f"{method} seed {seed}: eval FAILED: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    mine = [row for row in read_rows(rd / "results.jsonl") if row.get("run_id") == rd.name]
    write_rows(rows_dir / rd.name / "results.jsonl", mine)
    return f"{method} seed {seed}: done in {time.time() - t0:.0f}s ({len(mine)} rows)"


def baselines(a, seed: int, methods: list[str], rows_dir: Path) -> None:
    done = rows_dir / f".baselines-s{seed}"
    if done.is_file():
        return
    from ssl_bench.config import RunConfig
    from ssl_bench.pipeline import evaluate_baselines
    from ssl_bench.registry import EVALUATORS
    from ssl_bench.build import load_data

    log(f"baselines seed {seed}: pixels, random-init")
    cfg = RunConfig(dataset=a.dataset, preset=a.preset, seed=seed, device=a.device or "auto", progress=False)
    data = load_data(cfg)
    rows = evaluate_baselines(cfg, a.out, data, EVALUATORS.resolve(cfg.evaluators), methods)
    for run_id in sorted({r["run_id"] for r in rows}):
        write_rows(rows_dir / run_id / "results.jsonl", [r for r in rows if r["run_id"] == run_id])
    done.write_text("".join(sorted({r["run_id"] + "\n" for r in rows})))


def rebuild_board(a, rows_dir: Path) -> list[Path]:
    from ssl_bench.leaderboard import write_leaderboards

    with tempfile.TemporaryDirectory() as tmp:
        written = write_leaderboards(rows_dir, Path(tmp), [a.dataset],
                                     command=f"python scripts/standard_board.py (rows in {rows_dir.name}/)")
        out = []
        for p in written:
            dest = a.leaderboards / f"{a.dataset}-{a.preset}{p.suffix}"
            dest.write_bytes(p.read_bytes())
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
    ap.add_argument("--ssl-bench", default=str(Path(sys.executable).parent / "ssl-bench"))
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--leaderboards", type=Path, default=ROOT / "leaderboards",
                    help="where the table and its rows folder go (default: leaderboards/)")
    ap.add_argument("extra", nargs="*", help="extra flags for `ssl-bench train` after --, e.g. -- --set precision=fp32")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from ssl_bench.registry import METHODS

    methods = METHODS.resolve(a.methods) if a.methods != "all" else FIRST + [m for m in METHODS.names() if m not in FIRST]
    seeds = [int(s) for s in a.seeds.split(",")]
    rows_dir = a.leaderboards / f"{a.dataset}-{a.preset}-rows"
    a.out.mkdir(parents=True, exist_ok=True)
    todo = []
    for seed in seeds:
        for m in methods:
            rd = run_dir(a.out, a.dataset, m, a.preset, seed)
            if rd is not None and (rows_dir / rd.name / "results.jsonl").is_file():
                log(f"{m} seed {seed}: rows exist, skipped")
                continue
            todo.append((m, seed))
    if not a.no_baselines:
        for seed in seeds:
            baselines(a, seed, methods, rows_dir)
    failed = 0
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        for msg in pool.map(lambda ms: train_and_eval(a, ms[0], ms[1], rows_dir), todo):
            log(msg)
            failed += "FAILED" in msg
            if "FAILED" not in msg:
                log("board: " + ", ".join(str(p) for p in rebuild_board(a, rows_dir)))
    log("board: " + ", ".join(str(p) for p in rebuild_board(a, rows_dir)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
