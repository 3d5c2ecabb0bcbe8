"""The one training harness every method goes through.

config -> dataset + views -> method -> optimiser/schedule -> epochs -> checkpoints. Before each
step the method's ``clock`` is set (step, steps per epoch, total steps); after backward the
harness applies what the method declares, the same way for every method: parameters frozen this
step (``frozen_parameters``), per-tensor gradient clipping (``grad_clip``) and a cosine weight
decay schedule (``weight_decay_end``). CPU and CUDA share the code; on CUDA the views are
generated on the GPU. The forward runs under bf16 autocast where the device has native bf16
(CUDA, recent CPUs; config ``precision``, see
:mod:`ssl_bench.precision`). CPU runs are deterministic for a seed, including across ``--resume``.

The step never waits for the device: the only host-device synchronisations are one per
``log_every`` steps (the divergence check) and one per epoch (logs, checkpoint). Image batches
and weights are channels_last on every device (oneDNN and cuDNN convolutions prefer it);
``compile: true`` runs the step through ``torch.compile`` (any device).

Started by ``torchrun --nproc-per-node N``, the same function trains with DDP (see
:mod:`ssl_bench.distributed`): each rank takes a disjoint slice of every global batch
(``batch_size`` is the global batch), batch norm is synchronised unless the method sets
``sync_batchnorm = False``, and only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from . import budget as budget_mod
from . import distributed as dist
from . import monitor as monitor_mod
from . import precision, provenance, streaming, threads

# construction lives in .build; its names stay importable from here (plugins, scripts, tests)
from .build import backbone_choice as backbone_choice
from .build import (
    backbone_name,
    build_method,
    data_spec,
    load_data,
    resolve_device,
    seed_everything,
    train_split,
    trained_indices,
)
from .checkpoint import (
    atomic_write_text,
    latest_epoch_checkpoint,
    load_resume,
    remove_stale_tmp,
    run_lock,
    save_encoder,
    save_resume,
)
from .config import RunConfig
from .data import Data
from .errors import CheckpointError, ConfigError, SSLBenchError, TrainingDivergedError
from .method import Method, TrainClock
from .monitor import KNNMonitor, due
from .monitor import every as monitor_every_of
from .optim import make_optimizer, optim_choice, update_, warmup_cosine
from .recipe import recipe_record
from .results import CHECKPOINT_SCHEMA_VERSION
from .steplog import OnLog, StepLog
from .views import view_generator

if TYPE_CHECKING:
    from tqdm import tqdm


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    epochs: int
    train_seconds: float
    resumed_from: int


def run_dir_for(cfg: RunConfig, out: Path, kind: str) -> Path:
    """``out/<run id>``; a run id that is not a plain name (a method or dataset named ``../x`` in a
    config or a checkpoint's metadata) is refused before any folder is made."""
    from .names import safe_name

    return Path(out) / safe_name(cfg.run_id(backbone_name(cfg, kind)), "the run id")


class _Step(nn.Module):
    """``forward(views) = method.training_step(views)``: what DDP and torch.compile wrap."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method

    def forward(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.method.training_step(views)


def train(
    cfg: RunConfig,
    out: str | Path,
    resume: bool = False,
    data: Data | None = None,
    callbacks: list[Callable[[int, dict], None]] | None = None,
    *,
    checkpoint_every: int = 1,
    stop: Callable[[int, Method], bool] | None = None,
    save_every_steps: int = 0,
    on_log: OnLog | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> TrainResult:
    """Train ``cfg`` into ``out/<run_id>``; returns where the last checkpoint is.

    ``resume=True`` continues from ``checkpoints/resume.pt`` (and is a no-op on a finished
    run). ``callbacks`` are called as ``cb(epoch, logs)`` after each epoch's checkpoint.
    ``checkpoint_every=N`` writes the checkpoints (and the log row) every N epochs only, and
    always after the last one. ``stop(epoch, method)``, when given, is asked after every epoch
    but the last; ``True`` ends training there (that epoch is checkpointed, ``epochs`` of the
    result says how many ran). The learning-rate and EMA schedules keep the configured length,
    so a stopped run is exactly the first epochs of the full one. ``save_every_steps=N`` also
    writes ``resume.pt`` every N steps within an epoch (long epochs): ``resume=True`` then
    restarts at the next batch and trains the same weights as an uninterrupted run.
    ``on_log(kind, record)`` receives the logging events of :mod:`ssl_bench.steplog` (run start,
    every ``log_every`` steps, every epoch) on rank 0, e.g. for experiment trackers; the steps
    also go to ``train_steps.csv``.

    ``cfg.time_budget`` (seconds) fixes the total steps from a throughput probe before training
    (:mod:`ssl_bench.budget`); ``clock`` is the clock the probe and ``train_seconds`` read (tests
    inject their own).

    Streamed data (:mod:`ssl_bench.streaming`) is decoded by ``cfg.num_workers`` DataLoader
    workers; each rank decodes its own slice of every global batch. Unreadable files are skipped
    and counted: ``corrupt_files`` in the checkpoint metadata.

    While it trains, the process holds the run directory's lock (:func:`checkpoint.run_lock`);
    on every start the temporary files of a killed writer are removed and ``train_log.csv`` is
    trimmed to the epoch training restarts from (checkpoints after it are removed).
    """
    if checkpoint_every < 1:
        raise SSLBenchError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if save_every_steps < 0:
        raise SSLBenchError(f"save_every_steps must be >= 0, got {save_every_steps}")
    with contextlib.ExitStack() as locks, _threads_restored():
        return _train(cfg, out, resume, data, callbacks, locks, checkpoint_every, stop, save_every_steps, on_log, clock)


@contextlib.contextmanager
def _threads_restored() -> Iterator[None]:
    """Torch's thread count and the thread policy (:mod:`ssl_bench.threads`) as they were before
    :func:`train`, once it returns or raises: a config's ``num_threads`` pins the count for the
    training only, not for the caller's code after it."""
    n = torch.get_num_threads()
    saved = {k: getattr(threads, k) for k in ("_policy", "_pending") if hasattr(threads, k)}
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(threads, k, v)
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def _train(
    cfg: RunConfig,
    out: str | Path,
    resume: bool,
    data: Data | None,
    callbacks: list[Callable[[int, dict], None]] | None,
    locks: contextlib.ExitStack,
    checkpoint_every: int = 1,
    stop: Callable[[int, Method], bool] | None = None,
    save_every_steps: int = 0,
    on_log: OnLog | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> TrainResult:
    cfg = cfg.with_preset()
    assert cfg.epochs is not None and cfg.batch_size is not None  # every preset sets both
    # the command's thread setting (SSL_BENCH_THREADS) before any work, not after the first step:
    # a resumed run would take its first step on another count than the uninterrupted run did
    threads.adapt()
    if cfg.num_threads:
        threads.pin(cfg.num_threads)
    device = resolve_device(cfg.device)
    ddp = dist.init_from_env(device.type)
    device = dist.local_device(device)
    world, main = dist.world_size(), dist.is_main()
    full = data if data is not None else load_data(cfg)
    data = train_split(cfg, full)
    spec = data_spec(data)
    run_dir = run_dir_for(cfg, Path(out), data.kind)
    ckpt_dir = run_dir / "checkpoints"
    resume_path = ckpt_dir / "resume.pt"
    log_path = run_dir / "train_log.csv"
    _check_resume_path(resume_path)  # before the lock, the tmp-file clean-up, any restart
    if main:
        locks.enter_context(run_lock(run_dir, "train"))
        remove_stale_tmp(run_dir, ckpt_dir, run_dir / "embeddings")

    if not resume and latest_epoch_checkpoint(ckpt_dir) is not None:
        raise SSLBenchError(f"{run_dir} already has checkpoints: pass --resume to continue it, or choose another --out")
    if cfg.batch_size % world:
        raise SSLBenchError(f"batch_size {cfg.batch_size} (the global batch) is not divisible by the {world} processes")

    seed_everything(cfg.seed)
    method = build_method(cfg, spec).to(device)
    channels_last = precision.wants_channels_last(data.kind, data.input_shape)
    method = precision.model_to_layout(method, channels_last)
    prec = precision.resolve_precision(cfg.precision, device)
    views = method.make_views(spec, cfg.views)
    n_train = len(data.pretrain)
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch < 1:
        raise SSLBenchError(f"batch_size {cfg.batch_size} is larger than the training set ({n_train})")
    steps_per_pass = steps_per_epoch
    plan = None
    if cfg.time_budget is not None:  # the steps that fit the budget, cut into cfg.epochs parts
        probe = _Probe(cfg, data, device, method, views, channels_last, prec, steps_per_pass)
        plan = _budget_plan(cfg, probe, resume_path if resume else None, clock)
        steps_per_epoch = plan.steps_per_epoch
    total_steps = steps_per_epoch * cfg.epochs
    method.total_steps = total_steps  # EMA schedules scale to the run length (ssl_bench.ema)
    opt_name, lr, wd, opt_recipe = optim_choice(cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.batch_size, method)
    if ddp and method.sync_batchnorm:
        dist.convert_sync_batchnorm(method)  # same parameter objects: before or after the optimiser
    opt = make_optimizer(opt_name, method, lr, wd)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, cfg.warmup_frac))
    wd_base = [float(g["weight_decay"]) for g in opt.param_groups]  # before a resume overwrites them
    wd_end = method.weight_decay_end()
    # the recipe as resolved: the method's options with its defaults filled in, and the optimiser's
    # lr / weight decay; the run id hashes only what the config says, so a default changed since a
    # run was started would otherwise be resumed silently under the new value (options added since
    # the rows were recorded, at their neutral value, are left out: Method.recipe_neutral)
    recipe = recipe_record(method, vars(method.hp), lr, wd, opt_recipe)

    start_epoch, step, train_seconds, start_batch = 0, 0, 0.0, 0
    ckpt_epoch: int | None = 0  # the epoch of the last epoch checkpoint (resume.pt records it)
    resumed_sums: dict[str, float] = {}
    corrupt = streaming.CorruptFiles()
    if resume and resume_path.is_file():
        state = load_resume(resume_path)
        if state.get("config_hash") != cfg.hash():
            raise CheckpointError(
                f"{resume_path} belongs to another configuration (hash {state.get('config_hash')} != {cfg.hash()})"
            )
        if "recipe" in state and state["recipe"] != recipe:  # states before the check carry none
            raise CheckpointError(
                f"{resume_path} was trained with another {cfg.method} recipe (a default changed since: "
                f"{_recipe_diff(state['recipe'], recipe)}): delete {run_dir} to train it again, or choose another --out"
            )
        method.load_state_dict(state["method"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        start_epoch, step, train_seconds = int(state["epoch"]), int(state["step"]), float(state["train_seconds"])
        start_batch = int(state.get("batch", 0))  # > 0: saved within epoch start_epoch + 1
        resumed_sums = dict(state.get("sums", {}))
        corrupt.merge(state.get("corrupt_files", []))
        if start_epoch > cfg.epochs:
            raise CheckpointError(
                f"{resume_path} is at epoch {start_epoch}, beyond this run's {cfg.epochs} epochs: "
                f"it belongs to a longer run; delete it to restart from scratch"
            )
        # a state from before the record: at an epoch end, that epoch's checkpoint; within one, unknown
        ckpt_epoch = state.get("checkpoint_epoch", None if start_batch else start_epoch)
        _check_run_agrees(resume_path, log_path, start_epoch, start_batch, ckpt_epoch)
    if plan is not None and step == 0:
        train_seconds = plan.probe_seconds  # the budget counts the throughput probe
    if main:  # any restart: the log and the checkpoints go back to the epoch training starts from
        _truncate_log(log_path, start_epoch)
        monitor_mod.truncate(run_dir / "monitor.csv", start_epoch)
        _drop_checkpoints_after(ckpt_dir, start_epoch)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
    steplog = StepLog(run_dir, main, on_log)  # train_steps.csv, trimmed to the step training restarts from
    steplog.start(step, {"run_id": run_dir.name, "run_dir": str(run_dir), "config": cfg.to_dict()})

    step_module: nn.Module = _Step(method)
    if ddp:
        # buffers are equal at start and batch norm statistics are synchronised by the layers
        # themselves: no buffer broadcast per forward (newer torch names the keyword forward_sync_buffers)
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        no_buf_sync: dict[str, Any] = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else {"broadcast_buffers": False}
        )
        step_module = DistributedDataParallel(
            step_module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(method.ddp_find_unused_parameters),
            **no_buf_sync,
        )
    step_fn: Callable[..., Any] = torch.compile(step_module) if cfg.compile else step_module

    batches = _Batches(cfg, data, device, steps_per_epoch, corrupt, steps_per_pass)
    normalize = data.normalizer(device)  # the statistics moved to the device once
    bb_name = backbone_name(cfg, data.kind)
    autocast = precision.autocast(device, prec)
    monitor_every = monitor_every_of(cfg)
    streamed_eval = streaming.is_streamed(full.x_train) or streaming.is_streamed(full.x_test)
    monitor = (
        KNNMonitor(full, trained_indices(cfg, full))
        if monitor_every and main and full.num_classes and not streamed_eval
        else None
    )
    ran = cfg.epochs

    def resume_state(epoch: int, batch: int, sums: dict[str, torch.Tensor]) -> dict:
        return {
            "method": method.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "epoch": epoch,
            "step": step,
            "batch": batch,
            "sums": {k: float(v) for k, v in sums.items()},
            "corrupt_files": list(corrupt.names),
            "train_seconds": train_seconds,
            "config_hash": cfg.hash(),
            "recipe": recipe,
            "checkpoint_epoch": ckpt_epoch,
            **({"budget": plan.to_dict()} if plan is not None else {}),
        }

    for epoch in range(start_epoch, cfg.epochs):
        t0 = clock()
        method.train()
        first = start_batch if epoch == start_epoch else 0
        sums: dict[str, torch.Tensor] = (
            {k: torch.tensor(v, device=device) for k, v in resumed_sums.items()} if first else {}
        )
        bar = _progress(steps_per_epoch, f"{cfg.method} ep {epoch + 1}/{cfg.epochs}", cfg.progress and main)
        bar.update(first)
        for i, xb in batches(epoch, first):
            # every rank draws the same global batch and views, then keeps its own slice: the
            # result does not depend on the number of processes
            xb = data.to_float(xb)
            g = view_generator(cfg.seed, step, device)
            vs = [precision.to_layout(normalize(dist.shard(v)), channels_last) for v in views(xb, g)]
            method.clock = TrainClock(step, steps_per_epoch, total_steps, cfg.seed)
            with autocast:
                loss, logs = step_fn(vs)
            update_(method, opt, sched, loss, step, total_steps, wd_base, wd_end)
            step += 1
            threads.adapt()  # the fair-share thread count, when the policy is on (ssl_bench.threads)
            for k, v in {"loss": loss.detach(), **logs}.items():
                v = torch.as_tensor(v, device=device).detach().float()
                sums[k] = sums[k] + v if k in sums else v
            if (i + 1) % cfg.log_every == 0 or i + 1 == steps_per_epoch:
                cur = float(dist.mean_over_ranks(loss.detach().float()))  # one sync per log interval
                if not np.isfinite(cur):
                    raise TrainingDivergedError(_diverged_msg(cfg, epoch, step, cur, ckpt_dir))
                bar.set_postfix(loss=f"{cur:.4f}")
                seconds = train_seconds + clock() - t0
                steplog.step(step, steps_per_epoch, cur, float(sched.get_last_lr()[0]), seconds)
            bar.update(1)
            if save_every_steps and (i + 1) % save_every_steps == 0 and i + 1 < steps_per_epoch:
                batches.sync_corrupt()
                if main:  # mid-epoch: the next run resumes at batch i + 1 of this epoch
                    steplog.flush()
                    save_resume(resume_path, resume_state(epoch, i + 1, sums))
        bar.close()
        batches.sync_corrupt()
        means = {k: float(dist.mean_over_ranks(v)) / steps_per_epoch for k, v in sums.items()}
        if not all(np.isfinite(v) for v in means.values()):
            raise TrainingDivergedError(_diverged_msg(cfg, epoch, step, means.get("loss", float("nan")), ckpt_dir))
        train_seconds += clock() - t0  # (a resumed epoch: the time since the restart)
        if monitor is not None and due(epoch + 1, monitor_every, cfg.epochs):  # not in train_seconds
            means["knn_monitor"] = monitor(method, device, prec)
            monitor_mod.record(
                run_dir / "monitor.csv", train_seconds, step, epoch + 1, means["knn_monitor"], monitor.heldout
            )
        steplog.epoch({"epoch": epoch + 1, "step": step, "seconds": train_seconds, **means})
        stopping = stop is not None and epoch + 1 < cfg.epochs and bool(stop(epoch + 1, method))
        if main and (stopping or epoch + 1 == cfg.epochs or (epoch + 1) % checkpoint_every == 0):
            meta = {
                "schema_version": CHECKPOINT_SCHEMA_VERSION,
                "method": cfg.method,
                "dataset": cfg.dataset,
                "backbone": bb_name,
                "epoch": epoch + 1,
                "epochs": cfg.epochs,
                "step": step,
                "config": cfg.to_dict(),
                "config_hash": cfg.hash(),
                "kind": data.kind,
                "input_shape": list(data.input_shape),
                "out_dim": method.out_dim,
                "train_seconds": train_seconds,
                "versions": provenance.versions(),
                "git_commit": provenance.git_commit(),
                "source_digest": provenance.source_digest(),
                "hardware": provenance.hardware(device),
                "run_id": run_dir.name,
                "world_size": world,
                "precision": prec,
                "evaluated": method.evaluated,
                "recipe": recipe,
                **({"budget": plan.to_dict()} if plan is not None else {}),
            }
            if data.streamed:
                meta["corrupt_files"] = corrupt.summary()
                meta["num_workers"] = batches.num_workers
            _append_log(
                log_path,
                {
                    "epoch": epoch + 1,
                    "step": step,
                    "lr": sched.get_last_lr()[0],
                    "seconds": round(train_seconds, 3),
                    **means,
                },
            )
            ckpt = ckpt_dir / f"epoch_{epoch + 1:04d}.safetensors"
            save_encoder(ckpt, method.evaluated_backbone(), meta)  # resume.pt keeps the online one
            steplog.flush()
            ckpt_epoch = epoch + 1
            save_resume(resume_path, resume_state(epoch + 1, 0, {}))
        for cb in callbacks or []:
            cb(epoch + 1, means)
        if stopping:
            ran = epoch + 1
            break

    dist.barrier()  # the other ranks return once rank 0 has written the last checkpoint
    last = latest_epoch_checkpoint(ckpt_dir)
    if last is None:
        raise CheckpointError(f"{run_dir}: training produced no checkpoint")
    return TrainResult(run_dir, last, ran, train_seconds, start_epoch)


class _Batches:
    """The uint8 global batches of an epoch, from batch ``first`` on, on the training device.

    In memory: rows of the tensor put on the device once, in the epoch's seeded order. Streamed:
    DataLoader workers decode this rank's slice of each global batch (pinned memory and a
    non-blocking copy on CUDA) and the slices are all-gathered, so every rank holds the same
    global batch as in memory. Unreadable files met by the workers are added to ``corrupt``
    (and, under DDP, shared between the ranks by :meth:`sync_corrupt`).

    In memory, the global step picks the batch: step ``s`` is batch ``s % per_pass`` of pass
    ``s // per_pass`` (``per_pass``: the batches of one pass over the data; by default an epoch, so
    epoch = pass). A budgeted run's epochs are parts of passes (:mod:`ssl_bench.budget`)."""

    def __init__(
        self,
        cfg: RunConfig,
        data: Data,
        device: torch.device,
        steps: int,
        corrupt: streaming.CorruptFiles,
        per_pass: int | None = None,
    ) -> None:
        assert cfg.batch_size is not None
        self.cfg, self.device, self.steps, self.corrupt, self.bs = cfg, device, steps, corrupt, cfg.batch_size
        self.per_pass = per_pass or steps
        pretrain = data.pretrain
        self.source = pretrain if isinstance(pretrain, streaming.ImageSource) else None
        self.x_all = None if isinstance(pretrain, streaming.ImageSource) else pretrain.to(device)
        self.num_workers = (
            cfg.num_workers if cfg.num_workers is not None else streaming.default_num_workers(dist.world_size())
        )
        self.loader: torch.utils.data.DataLoader | None = None
        self.sampler: streaming.EpochBatches | None = None

    def __call__(self, epoch: int, first: int) -> Iterator[tuple[int, torch.Tensor]]:
        if self.x_all is not None:
            perm, now = None, -1
            for i in range(first, self.steps):
                p, j = divmod(epoch * self.steps + i, self.per_pass)  # the pass and its batch
                if p != now:
                    perm, now = streaming.epoch_permutation(len(self.x_all), self.cfg.seed, p).to(self.device), p
                assert perm is not None
                yield i, self.x_all[perm[j * self.bs : (j + 1) * self.bs]]
            return
        assert self.source is not None
        cuda = self.device.type == "cuda"
        if self.loader is None:  # one loader per run: its workers persist from epoch to epoch
            self.sampler = streaming.EpochBatches(
                len(self.source), self.bs, self.cfg.seed, epoch, first, dist.rank(), dist.world_size()
            )
            self.loader = streaming.loader(
                self.source,
                batch_sampler=self.sampler,
                num_workers=self.num_workers,
                pin_memory=cuda,
                seed=self.cfg.seed,
                persistent=True,
            )
        assert self.sampler is not None
        self.sampler.epoch, self.sampler.start = epoch, first  # read by the loader in this process
        for i, (xb, _y, bad, _ok) in enumerate(self.loader, first):
            for name, reason in bad:
                self.corrupt.add(name, reason)
            yield i, dist.all_gather_cat(xb.to(self.device, non_blocking=cuda))

    def sync_corrupt(self) -> None:
        """Every rank learns the unreadable files the others met (collective under DDP)."""
        if self.source is not None and dist.world_size() > 1:
            for names in dist.all_gather_objects(list(self.corrupt.names)):
                self.corrupt.merge(names)


class _Probe:
    """The throughput probe of a budgeted run: ``probe(i)`` runs training step ``i`` on a copy of
    the method with its own optimiser (the run's weights are untouched), through the same views,
    layout, precision and update as the trainer's step."""

    def __init__(
        self,
        cfg: RunConfig,
        data: Data,
        device: torch.device,
        method: Method,
        views: Callable[..., list[torch.Tensor]],
        channels_last: bool,
        prec: str,
        steps_per_pass: int,
    ) -> None:
        self.cfg, self.data, self.device, self.views, self.channels_last = cfg, data, device, views, channels_last
        self.steps_per_pass, self.prec, self.method = steps_per_pass, prec, method

    def start(self) -> None:
        cfg, method = self.cfg, copy.deepcopy(self.method)
        assert cfg.batch_size is not None
        name, lr, wd, _ = optim_choice(cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.batch_size, method)
        self.copy, self.opt = method, make_optimizer(name, method, lr, wd)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda _s: 1.0)
        self.wd_base, self.wd_end = [float(g["weight_decay"]) for g in self.opt.param_groups], method.weight_decay_end()
        module = _Step(method)
        self.step_fn: Callable[..., Any] = torch.compile(module) if cfg.compile else module
        self.normalize, self.autocast = self.data.normalizer(self.device), precision.autocast(self.device, self.prec)
        batches = _Batches(cfg, self.data, self.device, self.steps_per_pass, streaming.CorruptFiles())
        self.batches = (xb for epoch in range(1 << 30) for _i, xb in batches(epoch, 0))
        self.guess = self.steps_per_pass * max(int(cfg.epochs or 1), 1)  # a schedule length for the clock

    def __call__(self, i: int) -> None:
        threads.adapt()  # the thread count the training steps will have (the fair-share policy, if on)
        xb = self.data.to_float(next(self.batches))
        g = view_generator(self.cfg.seed, i, self.device)
        vs = [precision.to_layout(self.normalize(dist.shard(v)), self.channels_last) for v in self.views(xb, g)]
        self.copy.clock = TrainClock(i, self.steps_per_pass, self.guess, self.cfg.seed)
        with self.autocast:
            loss, _logs = self.step_fn(vs)
        update_(self.copy, self.opt, self.sched, loss, i, self.guess, self.wd_base, self.wd_end)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the clock must see the device's work


def _budget_plan(
    cfg: RunConfig, probe: _Probe, resume_path: Path | None, clock: Callable[[], float]
) -> budget_mod.BudgetPlan:
    """The plan stored in the resume state (``--resume``: the same total steps), else a new one
    from the probe (every rank trains rank 0's plan). The global random state is restored after
    the probe, so the training does not depend on it."""
    assert cfg.time_budget is not None and cfg.epochs is not None
    if resume_path is not None and resume_path.is_file():
        stored = load_resume(resume_path).get("budget")
        if stored:
            return budget_mod.BudgetPlan.from_dict(stored)
    if probe.data.streamed:
        raise ConfigError("time_budget needs the training images in memory; this dataset streams them from disk")
    rng = torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        probe.start()
        # on a CPU under the fair-share thread policy, warm up until it has chosen the thread count
        settle = threads.INTERVAL if threads.policy() == "fair" and probe.device.type == "cpu" else 0.0
        seconds, per_step = budget_mod.measure(probe, cfg.time_budget, clock, settle)
    finally:
        torch.set_rng_state(rng[0])
        if rng[1] is not None:
            torch.cuda.set_rng_state_all(rng[1])
    plan = budget_mod.plan(cfg.time_budget, seconds, per_step, cfg.epochs)
    return dist.all_gather_objects(plan)[0]


def _recipe_diff(was: dict, now: dict) -> str:
    changed = [k for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
    return ", ".join(f"{k} {was.get(k, '(none)')!r} -> {now.get(k, '(none)')!r}" for k in changed)


def _diverged_msg(cfg: RunConfig, epoch: int, step: int, value: float, ckpt_dir: Path) -> str:
    last = latest_epoch_checkpoint(ckpt_dir)
    keep = f"last good checkpoint kept: {last}" if last else "no checkpoint was written yet"
    return (
        f"{cfg.method}: loss became {value} at epoch {epoch + 1}, step {step}; {keep} "
        f"(try a lower --lr or check the method's options)"
    )


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=None if enabled else True, dynamic_ncols=True)


def _drop_checkpoints_after(ckpt_dir: Path, epoch: int) -> None:
    """Remove epoch checkpoints written after the resume state (a kill between an epoch's weights
    and its resume state): that epoch is trained again."""
    for p in list(Path(ckpt_dir).glob("epoch_*.safetensors")) if Path(ckpt_dir).is_dir() else []:
        try:
            n = int(p.stem.split("_", 1)[1])
        except ValueError:
            continue
        if n > epoch:
            p.unlink(missing_ok=True)
            p.with_suffix(".json").unlink(missing_ok=True)


def _append_log(path: Path, row: dict) -> None:
    _write_log(path, _read_log(path) + [row])


def _write_log(path: Path, rows: list[dict]) -> None:
    """Rewrite the whole CSV atomically (it is small: one row per epoch)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _read_log(path: Path) -> list[dict]:
    """The log's rows with a whole epoch number. A damaged log (torn line, garbage) keeps its
    readable rows; the original is saved as ``train_log.csv.damaged`` before it is rewritten."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    rows, damaged = _parse_log(raw)
    if damaged:
        from .checkpoint import atomic_write

        keep = path.with_name(path.name + ".damaged")
        atomic_write(keep, lambda tmp: Path(tmp).write_bytes(raw))
    return rows


def _parse_log(raw: bytes) -> tuple[list[dict], bool]:
    """(the rows with a whole epoch number, whether any line was damaged) of a log's bytes."""
    rows: list[dict] = []
    damaged = False
    try:
        text = raw.decode("utf-8")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for r in reader:
            ep = r.get("epoch")
            if None in r or any(v is None for v in r.values()) or ep is None or not str(ep).strip().isdigit():
                damaged = True
                continue
            rows.append(r)
        if raw.strip() and (reader.fieldnames is None or "epoch" not in reader.fieldnames):
            damaged = True
    except (UnicodeDecodeError, csv.Error):
        damaged, rows = True, []
    return rows, damaged


def _check_resume_path(resume_path: Path) -> None:
    """A ``resume.pt`` that is there but is no regular file (a folder, a dangling link) is an error
    now: read as "no resume state", it would restart the run and drop its checkpoints."""
    if os.path.lexists(resume_path) and not resume_path.is_file():
        what = "a directory" if resume_path.is_dir() else "not a regular file"
        raise CheckpointError(
            f"{resume_path} is {what}, not a resume state; nothing was changed: move it away "
            f"(without it --resume trains the run again from the start)"
        )


def _check_run_agrees(resume_path: Path, log_path: Path, epoch: int, batch: int, ckpt_epoch: Any) -> None:
    """The resume state (after ``epoch`` epochs, ``batch`` batches into the next; its last epoch
    checkpoint ``ckpt_epoch``, None where unknown) must agree with the run's files: that
    checkpoint is there and ``train_log.csv`` ends at it. A torn log or a missing checkpoint would
    otherwise make a resumed run report one epoch and return another's weights. Reads only."""
    if ckpt_epoch is None:
        return
    if isinstance(ckpt_epoch, bool) or not isinstance(ckpt_epoch, int) or not 0 <= ckpt_epoch <= epoch:
        raise CheckpointError(
            f"resume state {resume_path}: 'checkpoint_epoch' must be in [0, {epoch}], got {ckpt_epoch!r}"
        )
    if ckpt_epoch == 0:
        return
    ckpt = resume_path.parent / f"epoch_{ckpt_epoch:04d}.safetensors"
    rows, damaged = _parse_log(log_path.read_bytes()) if log_path.is_file() else ([], False)
    last = max((int(r["epoch"]) for r in rows if int(r["epoch"]) <= epoch), default=0)
    if not ckpt.is_file():
        problem = f"its checkpoint {ckpt.name} is missing"
    elif not log_path.is_file():
        problem = f"{log_path.name} is missing"
    elif last != ckpt_epoch:
        problem = f"{log_path.name} ends at epoch {last}" + (" (it has damaged lines)" if damaged else "")
    else:
        return
    where = f"epoch {epoch}" + (f", batch {batch} of epoch {epoch + 1}" if batch else "")
    raise CheckpointError(
        f"{resume_path} is after {where} (last checkpoint: epoch {ckpt_epoch}) but {problem}; the run's files "
        f"disagree, so nothing was changed: restore them, or delete {resume_path} to train the run again"
    )


def _truncate_log(path: Path, epoch: int) -> None:
    if path.is_file():
        rows = _read_log(path)
        kept = [r for r in rows if int(r["epoch"]) <= epoch]
        if len(kept) != len(rows) or path.with_name(path.name + ".damaged").is_file():
            _write_log(path, kept)
