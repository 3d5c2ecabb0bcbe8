"""--log-to tensorboard,wandb,mlflow (ssl_bench.trackers): each tracker's own files, read back with
its own reader."""
import csv
import json
import struct
import sys

import pytest

from ssl_bench.cli import main
from ssl_bench.results import read_rows

TINY = ["--dataset", "mog2d", "--preset", "smoke", "--epochs", "2", "--batch-size", "64", "--device", "cpu",
        "--no-progress", "--set", "train_subset=512", "--set", "eval_train_subset=512",
        "--set", "eval_test_subset=256", "--set", "precision=fp32", "--set", "log_every=3",
        "--set", "knn_monitor_every=1"]


def _steps(run_dir):
    with open(run_dir / "train_steps.csv", newline="") as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


def _run_dir(runs):
    (d,) = [p for p in runs.iterdir() if (p / "checkpoints").is_dir()]
    return d


def test_train_logs_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (the test extra has it)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = tmp_path / "runs"
    assert main(["train", "--method", "simclr", "--out", str(runs), "--log-to", "tensorboard"] + TINY) == 0
    run = _run_dir(runs)
    acc = EventAccumulator(str(runs / "tensorboard" / run.name))
    acc.Reload()
    loss = acc.Scalars("loss")
    # 8 steps per epoch, a row every 3 steps and at each epoch's end: the same steps as train_steps.csv
    assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in loss] == _steps(run)
    assert [e.step for e in loss] == [3, 6, 8, 11, 14, 16]
    assert [e.step for e in acc.Scalars("lr")] == [3, 6, 8, 11, 14, 16] and acc.Scalars("lr")[-1].value == 0.0
    with open(run / "train_log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars("monitor/knn_top1")] == [
        (8, float(log[0]["knn_monitor"])), (16, float(log[1]["knn_monitor"]))]
    assert [pytest.approx(e.value, rel=1e-6) for e in acc.Scalars("epoch_mean/loss")] == [float(r["loss"]) for r in log]
    assert "config/text_summary" in acc.Tags()["tensors"]


def test_resumed_run_continues_its_tensorboard_folder(tiny, tmp_path):
    """A run stopped after epoch 1 and resumed: one loss series, each step once, as train_steps.csv."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (the test extra has it)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ssl_bench.trackers import TrackerSession
    from ssl_bench.trainer import train

    cfg, runs = tiny(epochs=2, log_every=3), tmp_path / "runs"
    for resume in (False, True):
        session = TrackerSession(["tensorboard"], runs)
        try:
            res = train(cfg, runs, resume=resume, on_log=session, stop=None if resume else (lambda e, m: True))
            session.finish()
        finally:
            session.close()
    acc = EventAccumulator(str(runs / "tensorboard" / res.run_dir.name))
    acc.Reload()
    assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars("loss")] == _steps(res.run_dir)
    assert [e.step for e in acc.Scalars("epoch_mean/loss")] == [8, 16]


# -- W&B's offline run file: the LevelDB-style log of protobuf records W&B writes ----------------
def _wandb_records(path):
    from wandb.proto import wandb_internal_pb2 as pb

    raw = path.read_bytes()
    assert raw[:4] == b":W&B"
    pos, block, buf, out = 7, 32768, b"", []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, n, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if kind == 0:
            break
        buf += raw[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # a whole record, or the last piece of one
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


def _wandb_run(runs, name):
    (f,) = [p for p in (runs / "wandb").glob("offline-run-*/run-*.wandb")
            if any(r.WhichOneof("record_type") == "run" and r.run.display_name == name for r in _wandb_records(p))]
    recs = _wandb_records(f)

    def items(updates):
        return {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in updates}

    kinds = [(r.WhichOneof("record_type"), r) for r in recs]
    history = [items(r.history.item) for k, r in kinds if k == "history"]
    config = {key: v for k, r in kinds if k in ("run", "config")
              for key, v in items((r.run.config if k == "run" else r.config).update).items()}
    summary = {key: v for k, r in kinds if k == "summary" for key, v in items(r.summary.update).items()}
    artifacts = [r.artifact for r in recs if r.WhichOneof("record_type") == "artifact"]
    return history, config, summary, artifacts


@pytest.mark.slow
def test_run_logs_to_wandb_offline_and_mlflow(tmp_path, monkeypatch):
    """A `run` (train, evaluate, report) logged to W&B offline and to MLflow's local store: the
    per-step loss, the monitor, the config, the final metrics, and the report as an artifact."""
    pytest.importorskip("wandb", reason="the wandb extra is not installed (the test extra has it)")
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (the test extra has it)")
    from mlflow.tracking import MlflowClient

    from ssl_bench.trackers import mlflow_uri

    for k in ("WANDB_MODE", "WANDB_PROJECT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(k, raising=False)
    runs = tmp_path / "runs"
    assert main(["run", "--methods", "simclr", "--evaluators", "knn,rankme", "--no-baselines", "--out", str(runs),
                 "--leaderboards", str(tmp_path / "lb"), "--report-out", str(tmp_path / "report"),
                 "--log-to", "wandb,mlflow"] + TINY) == 0
    run = _run_dir(runs)
    steps = _steps(run)
    results = {f"{r['evaluator']}/{r['metric']}": r["value"] for r in read_rows([run / "results.jsonl"])}
    # W&B: offline (no network), under the runs directory
    history, config, summary, _ = _wandb_run(runs, run.name)
    logged = [(h["_step"], h["loss"]) for h in history if "loss" in h]
    assert [s for s, _ in logged] == [s for s, _ in steps] and [v for _, v in logged] == pytest.approx(
        [v for _, v in steps], rel=1e-6)
    assert [h["_step"] for h in history if "monitor/knn_top1" in h] == [8, 16]
    assert config["method"] == "simclr" and config["epochs"] == 2 and config["log_every"] == 3
    assert summary["knn/top1"] == pytest.approx(results["knn/top1"]) and "rankme/rank" in summary
    _, _, _, arts = _wandb_run(runs, "mog2d-report")
    assert sorted(m.path for a in arts for m in a.manifest.contents) == ["index.html", "mog2d.csv", "mog2d.md"]
    # MLflow: the SQLite store in the runs directory
    client = MlflowClient(tracking_uri=mlflow_uri(runs))
    exp = client.get_experiment_by_name("ssl-bench")
    (mr,) = client.search_runs([exp.experiment_id], f"tags.`ssl_bench.run_id` = '{run.name}'")
    assert mr.info.status == "FINISHED" and mr.data.params["method"] == "simclr"
    hist = sorted((m.step, m.value) for m in client.get_metric_history(mr.info.run_id, "loss"))
    assert [s for s, _ in hist] == [s for s, _ in steps] and [v for _, v in hist] == pytest.approx(
        [v for _, v in steps], rel=1e-6)
    assert mr.data.metrics["knn/top1"] == pytest.approx(results["knn/top1"])
    assert len(client.get_metric_history(mr.info.run_id, "monitor/knn_top1")) == 2
    (rep,) = client.search_runs([exp.experiment_id], "tags.`ssl_bench.kind` = 'report'")
    assert sorted(a.path for a in client.list_artifacts(rep.info.run_id, "report")) == [
        "report/index.html", "report/mog2d.csv", "report/mog2d.md"]
    assert "config.json" in [a.path for a in client.list_artifacts(mr.info.run_id)]


def test_mlflow_file_store_named_by_uri(tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI=file:... : the session's events land in that file store."""
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (the test extra has it)")
    from mlflow.tracking import MlflowClient

    from ssl_bench.trackers import TrackerSession

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tele-test")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    s = TrackerSession(["mlflow"], tmp_path / "runs")
    s("start", {"run_id": "mog2d-simclr-x", "config": {"method": "simclr", "views": {"crop": 1}}, "step": 0})
    for step, loss in ((3, 2.5), (6, 2.25)):
        s("step", {"step": step, "epoch": step / 8, "loss": loss, "lr": 0.1, "seconds": step * 0.5})
    s("epoch", {"epoch": 1, "step": 8, "seconds": 4.0, "loss": 2.4, "knn_monitor": 61.5})
    s.close()  # never finished: the run is marked failed
    client = MlflowClient(tracking_uri=uri)
    (r,) = client.search_runs([client.get_experiment_by_name("tele-test").experiment_id])
    assert r.info.status == "FAILED" and r.data.params["views.crop"] == "1"
    assert [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "loss")] == [(3, 2.5), (6, 2.25)]
    assert r.data.metrics["monitor/knn_top1"] == 61.5 and r.data.metrics["epoch_mean/loss"] == 2.4
    assert (tmp_path / "mlruns").is_dir() and not (tmp_path / "runs" / "mlflow.db").exists()


@pytest.mark.parametrize("name,extra", [("tensorboard", "tensorboard"), ("wandb", "wandb"), ("mlflow", "mlflow")])
def test_missing_tracker_package_is_one_line_naming_the_extra(name, extra, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, name, None)  # import fails, find_spec says "not installed"
    for cmd in (["train"], ["run", "--methods", "simclr"]):
        assert main(cmd + ["--out", str(tmp_path / "runs"), "--log-to", f"{name}"] + TINY) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"pip install 'ssl-bench[{extra}]'" in err, err
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_unknown_tracker_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "runs"), "--log-to", "tensorboard,comet"] + TINY) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown tracker 'comet'" in err and "mlflow, tensorboard, wandb" in err
