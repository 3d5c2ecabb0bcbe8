"""Sweeps through submitit: one job per (method, seed), on SLURM or as local processes.

``ssl-bench run --launcher slurm|local`` calls :func:`submit_sweep`. Each job trains (resuming
whatever an earlier attempt left) and evaluates one run, appending its rows to the run's
``results.jsonl`` exactly as the in-process sweep does; the driver computes the baselines
itself (no training), waits for every job and returns all rows, so ``cmd_run`` writes the same
leaderboards whichever launcher ran the jobs. ``local`` is ``submitit.LocalExecutor`` (a process
per job on this machine, for trying a sweep and for tests); ``slurm`` is ``submitit.AutoExecutor``
with the partition / time / GPU options. Job logs land in ``<out>/submitit/``.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .config import RunConfig
from .errors import ConfigError, RunsFailed, SSLBenchError

if TYPE_CHECKING:
    import submitit

    from .data import Data

LAUNCHERS = ("inprocess", "local", "slurm")


@dataclass
class SlurmOptions:
    partition: str | None = None
    timeout_min: int = 60
    gpus_per_node: int = 0
    cpus_per_task: int = 4
    mem_gb: int | None = None
    extra: dict = field(default_factory=dict)  # any other submitit parameter (slurm_account=...)


def run_one(cfg_dict: dict, out: str) -> list[dict]:
    """The job body: train (or resume) one run, evaluate it, return its result rows."""
    from .build import load_data
    from .pipeline import evaluate_checkpoint
    from .trainer import train

    cfg = RunConfig.from_dict(cfg_dict)
    data = load_data(cfg)
    res = train(cfg, Path(out), resume=True, data=data)
    return evaluate_checkpoint(res.checkpoint, cfg.evaluators, device=cfg.device, data=data)


def make_executor(launcher: str, folder: Path, slurm: SlurmOptions | None = None) -> submitit.Executor:
    try:
        import submitit
    except ImportError as exc:
        raise SSLBenchError(f"--launcher {launcher} needs submitit: pip install 'ssl-bench[slurm]'") from exc

    if launcher == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=(slurm or SlurmOptions()).timeout_min)
        return ex
    if launcher == "slurm":
        if shutil.which("sbatch") is None:
            raise ConfigError(
                "--launcher slurm needs SLURM's sbatch on PATH (not found); "
                "use --launcher local to run the jobs on this machine"
            )
        o = slurm or SlurmOptions()
        auto = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params = dict(
            timeout_min=o.timeout_min,
            gpus_per_node=o.gpus_per_node,
            cpus_per_task=o.cpus_per_task,
            tasks_per_node=1,
            nodes=1,
            **o.extra,
        )
        if o.partition:
            params["slurm_partition"] = o.partition
        if o.mem_gb:
            params["mem_gb"] = o.mem_gb
        auto.update_parameters(**params)
        return auto
    raise ConfigError(f"unknown launcher {launcher!r}; known: {', '.join(LAUNCHERS)}")


def submit_sweep(
    methods: list[str],
    base: RunConfig,
    seeds: list[int],
    out: Path,
    launcher: str,
    baselines: bool = True,
    slurm: SlurmOptions | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Submit every method x seed as a job, compute baselines here, wait, return all rows."""
    from .build import load_data
    from .console import run_line
    from .pipeline import evaluate_baselines
    from .registry import EVALUATORS

    out = Path(out)
    if log is None:
        from .console import logger

        log = logger.info
    evaluators = EVALUATORS.resolve(base.evaluators)
    ex = make_executor(launcher, out / "submitit", slurm)
    cfgs = [dataclasses.replace(base, method=m, seed=s) for s in seeds for m in methods]
    jobs = []
    with ex.batch():  # one array job on SLURM
        for cfg in cfgs:
            jobs.append(ex.submit(run_one, cfg.to_dict(), str(out)))
    log(f"[{launcher}] submitted {len(jobs)} job(s): " + ", ".join(str(j.job_id) for j in jobs))
    rows: list[dict] = []
    if baselines:
        data = load_data(base)
        for s in seeds:
            log(f"[baselines] {base.dataset} seed {s}: pixels, random-init")
            rows += evaluate_baselines(dataclasses.replace(base, seed=s), out, data, evaluators, methods)
    failed = []
    for cfg, job in zip(cfgs, jobs, strict=True):
        try:
            new = job.result()
        except Exception as exc:  # submitit.core.utils.FailedJobError / UncompletedJobError
            lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            last = lines[-1] if lines else type(exc).__name__
            failed.append(f"{cfg.method} seed {cfg.seed} (job {job.job_id}): {last}")
            continue
        by_ev: dict[str, dict] = {}
        for r in new:
            by_ev.setdefault(r["evaluator"], {})[r["metric"]] = r["value"]
        secs = float(new[0].get("train_seconds") or 0.0) if new else 0.0
        log(run_line(cfg.method, cfg.seed, f"job {job.job_id} trained", secs, secs, by_ev))
        rows += new
    if failed:
        raise RunsFailed(
            f"{len(failed)} of {len(jobs)} job(s) failed (logs in {out / 'submitit'}): " + "; ".join(failed)
        )
    return rows


def train_only(methods: list[str], base: RunConfig, seeds: list[int], out: Path, data: Data | None = None) -> None:
    """What ranks > 0 do in ``torchrun ... run``: the same training calls as rank 0's sweep
    (in the same order, so the collectives line up), no evaluation and no files."""
    from .build import load_data
    from .trainer import train

    data = data if data is not None else load_data(base)
    for seed in seeds:
        for m in methods:
            train(dataclasses.replace(base, method=m, seed=seed), Path(out), resume=True, data=data)
