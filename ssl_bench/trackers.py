"""Experiment trackers: ``--log-to tensorboard,wandb,mlflow`` on ``ssl-bench train`` and ``run``.

One small interface, :class:`Tracker`, and a registry of them (``TRACKERS``; a third-party
package adds one through the ``ssl_bench.trackers`` entry-point group). Each ssl-bench run (one
method x seed) is one tracker run, named by its run id. It receives:

* the config, when the run starts (:mod:`ssl_bench.steplog`'s ``start`` event);
* ``loss``, ``lr``, ``epoch`` and ``seconds`` every ``log_every`` steps;
* per epoch, the epoch's mean losses (``epoch_mean/<name>``) and the online k-NN monitor
  (``monitor/knn_top1``) where it ran;
* after evaluation (``run``), the final metrics: ``<evaluator>/<metric>`` of the result rows.

``ssl-bench run`` then logs the report and the leaderboard files it wrote as artifacts of one more
tracker run, ``<dataset>-report``. Where the logs go, all without a network by default:

===========  ===========================================================================
tensorboard  ``<runs>/tensorboard/<run id>/`` event files (``tensorboard --logdir runs/tensorboard``);
             artifacts are copied into ``<run id>/artifacts/``
wandb        offline runs in ``<runs>/wandb/offline-run-*`` (``wandb sync`` uploads them); the
             project is ``$WANDB_PROJECT`` (default ``ssl-bench``), ``WANDB_MODE=online`` logs live
mlflow       ``$MLFLOW_TRACKING_URI`` if set (a ``file:`` store works: MLflow 3 wants
             ``MLFLOW_ALLOW_FILE_STORE=true`` for one, which is then set), else the local SQLite
             store ``<runs>/mlflow.db`` with artifacts in ``<runs>/mlartifacts/``
             (``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``); the experiment is
             ``$MLFLOW_EXPERIMENT_NAME`` (default ``ssl-bench``)
===========  ===========================================================================

A resumed run continues its tracker run where the tracker allows it: the same TensorBoard folder
(events after the restart step replace the old ones), the same W&B run id, the same MLflow run.
Each tracker is an optional extra (``pip install 'ssl-bench[tensorboard]'``, ``[wandb]``,
``[mlflow]``, or ``[trackers]`` for all three); :func:`check` says which one is missing before
any training starts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from .errors import ConfigError
from .registry import Registry

TRACKERS: Registry = Registry("tracker", "ssl_bench.trackers", "ssl_bench.trackers")


class Tracker:
    """One tracker run. ``key``, when given, identifies an ssl-bench run across restarts (its run
    id): a tracker that can continue a run does so. ``step`` is where logging (re)starts."""

    module: ClassVar[str] = ""  # the package it needs (checked before training)
    extra: ClassVar[str] = ""  # the pyproject extra that installs it

    def __init__(self, out: Path, name: str, config: dict, key: str | None, step: int) -> None:
        raise NotImplementedError

    def log(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def summary(self, metrics: dict[str, float], step: int) -> None:
        """The final metrics of the run."""
        raise NotImplementedError

    def artifact(self, path: Path) -> None:
        raise NotImplementedError

    def close(self, ok: bool) -> None:
        raise NotImplementedError


def parse(text: str | None) -> list[str]:
    """``"tensorboard,wandb"`` -> the checked names (see :func:`check`); None or "" -> []."""
    names = [n.strip().lower() for n in (text or "").split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise ConfigError(f"--log-to {text}: a tracker is named twice")
    check(names)
    return names


def check(names: Iterable[str]) -> None:
    """Unknown tracker names and trackers whose package is not installed: one-line errors."""
    for n in names:
        cls = TRACKERS.get(n)
        if cls.module and importlib.util.find_spec(cls.module) is None:
            raise ConfigError(
                f"--log-to {n} needs the {cls.module} package, which is not installed: "
                f"pip install 'ssl-bench[{cls.extra}]'"
            )


def _numbers(d: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


class TrackerSession:
    """The trainer's ``on_log`` hook (:mod:`ssl_bench.steplog`) sent to the trackers ``names``, for
    one run: the trackers open at the run's ``start`` event (on the rank that logs), and
    :meth:`close` ends them (failed unless :meth:`finish` was called)."""

    def __init__(self, names: list[str], out: Path) -> None:
        self.names, self.out = list(names), Path(out)
        self.trackers: list[Tracker] = []
        self.step, self.ok = 0, False

    def __call__(self, kind: str, record: dict) -> None:
        if not self.names:
            return
        self.step = int(record.get("step", self.step))
        if kind == "start":
            self.open(record["run_id"], record.get("config", {}), key=record["run_id"])
        elif kind == "step":
            self._log({k: record[k] for k in ("loss", "lr", "epoch", "seconds") if k in record})
        elif kind == "epoch":
            means = {k: v for k, v in record.items() if k not in ("epoch", "step", "seconds", "knn_monitor")}
            logs = {f"epoch_mean/{k}": v for k, v in means.items()}  # not epoch/: "epoch" is a series
            if "knn_monitor" in record:
                logs["monitor/knn_top1"] = record["knn_monitor"]
            self._log(logs)

    def open(self, name: str, config: dict, key: str | None) -> None:
        self.close()
        self.ok = False
        self.out.mkdir(parents=True, exist_ok=True)
        self.trackers = [TRACKERS.get(n)(self.out, name, config, key, self.step) for n in self.names]

    def _log(self, metrics: dict[str, Any]) -> None:
        got = _numbers(metrics)
        for t in self.trackers if got else []:
            t.log(got, self.step)

    def finish(self, rows: Iterable[dict] = ()) -> None:
        """The run ended well; ``rows`` (result rows) are its final metrics."""
        final = _numbers(
            {f"{r['evaluator']}/{r['metric']}": r.get("value") for r in rows if r.get("status", "ok") == "ok"}
        )
        for t in self.trackers if final else []:
            t.summary(final, self.step)
        self.ok = True

    def close(self) -> None:
        trackers, self.trackers = self.trackers, []
        for t in trackers:
            t.close(self.ok)


def log_report(names: list[str], out: Path, dataset: str, files: Iterable[Path]) -> None:
    """The report and leaderboard files of a ``run`` as artifacts of one tracker run, ``<dataset>-report``."""
    if not names:
        return
    session = TrackerSession(names, out)
    session.open(f"{dataset}-report", {"dataset": dataset}, key=None)
    for f in files:
        if Path(f).is_file():
            for t in session.trackers:
                t.artifact(Path(f))
    session.finish()
    session.close()


def _flat(d: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as ``a.b = value`` strings (MLflow parameters)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True, default=str) if not isinstance(v, str) else v
    return out


# -- the built-in trackers -------------------------------------------------------------------------
@TRACKERS.register("tensorboard")
class TensorBoard(Tracker):
    """Event files under ``<runs>/tensorboard/<name>/``: scalars by step, the config and the final
    metrics as text, artifacts copied beside them."""

    module, extra = "tensorboard", "tensorboard"

    def __init__(self, out: Path, name: str, config: dict, key: str | None, step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(out) / "tensorboard" / name
        # purge_step: events after the restart step, left by the interrupted run, are hidden
        self.writer = SummaryWriter(str(self.dir), purge_step=step + 1 if step > 0 else None)
        self.writer.add_text(
            "config", "    " + json.dumps(config, indent=2, sort_keys=True).replace("\n", "\n    "), step
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def summary(self, metrics: dict[str, float], step: int) -> None:
        self.log(metrics, step)
        table = "| metric | value |\n|---|---|\n" + "".join(f"| {k} | {v:.6g} |\n" for k, v in sorted(metrics.items()))
        self.writer.add_text("final metrics", table, step)

    def artifact(self, path: Path) -> None:
        dest = self.dir / "artifacts" / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        self.writer.add_text("artifacts", f"{path.name}: {dest}")

    def close(self, ok: bool) -> None:
        self.writer.close()


def _wandb_id(key: str) -> str:
    """A W&B run id from an ssl-bench run id (W&B ids: letters, digits, - and _; at most 64 here)."""
    rid = re.sub(r"[^A-Za-z0-9_-]", "-", key)
    return rid if len(rid) <= 64 else rid[:51] + "-" + hashlib.sha256(key.encode()).hexdigest()[:12]


@TRACKERS.register("wandb")
class WandB(Tracker):
    """A W&B run, offline unless ``WANDB_MODE`` says otherwise, in ``<runs>/wandb/``."""

    module, extra = "wandb", "wandb"

    def __init__(self, out: Path, name: str, config: dict, key: str | None, step: int) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or "ssl-bench",
            name=name,
            id=_wandb_id(key) if key else None,
            resume="allow" if key else None,
            dir=str(out),
            mode=os.environ.get("WANDB_MODE") or "offline",  # type: ignore[arg-type]
            config=config,
            job_type="train" if key else "report",
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def summary(self, metrics: dict[str, float], step: int) -> None:
        self.run.summary.update(metrics)

    def artifact(self, path: Path) -> None:
        art = self.wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]", "-", f"{self.run.name}-{path.name}"), type="report")
        art.add_file(str(path))
        self.run.log_artifact(art)

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


def mlflow_uri(out: Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else the SQLite store ``<out>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(out) / 'mlflow.db').resolve()}"


@TRACKERS.register("mlflow")
class MLflow(Tracker):
    """An MLflow run in the experiment ``$MLFLOW_EXPERIMENT_NAME`` (default ``ssl-bench``); a run
    with the same ssl-bench run id (tag ``ssl_bench.run_id``) is continued."""

    module, extra = "mlflow", "mlflow"

    def __init__(self, out: Path, name: str, config: dict, key: str | None, step: int) -> None:
        uri = mlflow_uri(out)
        if uri.startswith("file:"):  # MLflow 3 refuses a file store unless told: the user named one
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        for noisy in ("mlflow", "alembic"):  # database migrations log at INFO on first use
            logging.getLogger(noisy).setLevel(logging.WARNING)
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self.Metric = Metric
        self.client = MlflowClient(tracking_uri=uri)
        exp_name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "ssl-bench"
        exp = self.client.get_experiment_by_name(exp_name)
        default_store = "MLFLOW_TRACKING_URI" not in os.environ or not os.environ["MLFLOW_TRACKING_URI"]
        where = (Path(out) / "mlartifacts").resolve().as_uri() if default_store else None
        eid = exp.experiment_id if exp is not None else self.client.create_experiment(exp_name, artifact_location=where)
        found = self.client.search_runs([eid], f"tags.`ssl_bench.run_id` = '{key}'", max_results=1) if key else []
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {"ssl_bench.run_id": key} if key else {"ssl_bench.kind": "report"}
            self.run_id = self.client.create_run(eid, run_name=name, tags=tags).info.run_id
            params = [Param(k[:250], v[:6000]) for k, v in _flat(config).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
                self.client.log_batch(self.run_id, params=params[i : i + 100])
        if config:
            self.client.log_dict(self.run_id, config, "config.json")

    def log(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self.Metric(k, v, now, step) for k, v in metrics.items()])

    def summary(self, metrics: dict[str, float], step: int) -> None:
        items = list(metrics.items())
        for i in range(0, len(items), 1000):
            self.log(dict(items[i : i + 1000]), step)

    def artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="report")

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")
