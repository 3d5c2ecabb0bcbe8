"""Fuzz the CLI with malformed invocations and count clean errors vs tracebacks (issue 14).

    python benchmarks/fuzz_cli.py [--out DIR] [--verbose]

Every invocation runs in-process through ``ssl_bench.cli.main`` (one torch import for all). An
outcome is *clean* when the status is 2 and stderr is one ``ssl-bench: error:`` line, a
*traceback* when an exception escapes ``main``, *accepted* when the status is 0 (the input was
valid after all: listed, so that a human can judge), *other* otherwise. Nothing writes outside
``--out`` (a temporary folder by default). Not part of the test run (tests/harness/test_reliability.py
keeps a fixed list); this generates combinations, damaged checkpoints and damaged data files.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import itertools
import json
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

TINY = ["--dataset", "mog2d", "--preset", "smoke", "--batch-size", "64", "--set", "train_subset=256",
        "--set", "precision=fp32", "--device", "cpu", "--no-progress", "--evaluators", "knn"]

CONFIG_KEYS = ["epochs", "batch_size", "seed", "lr", "weight_decay", "warmup_frac", "train_subset", "num_threads",
               "log_every", "device", "optimizer", "precision", "evaluators", "views", "method_kwargs",
               "backbone", "eval_test_subset", "dataset_kwargs"]
BAD_VALUES = ["-1", "0", "1e400", ".nan", "-.inf", "[1, 2]", "{a: 1}", "''", "999999999999999999999", "\"x\""]
EVAL_OPTS = {"knn": ["k", "ks", "temperature", "backend", "index", "nprobe"],
             "linear": ["val_frac", "weight_decays", "max_iter", "mode"],
             "rankme": ["max_samples", "seed"], "collapse": ["max_samples", "n_pairs"],
             "alpha-req": ["fit_start", "max_samples"], "lowshot": ["fractions", "val_frac"]}
EVAL_BAD = ["0", "-3", "[0]", "abc", ".nan", "[]", "1e9"]


def invocations(work: Path, ckpt: Path | None):
    out = ["--out", str(work / "runs")]
    for key, val in itertools.product(CONFIG_KEYS, BAD_VALUES):
        yield ["train", *TINY, "--set", f"{key}={val}", *out]
    npz = work / "emb.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, train_x=rng.normal(size=(60, 4)).astype(np.float32), train_y=np.arange(60) % 3,
             test_x=rng.normal(size=(30, 4)).astype(np.float32), test_y=np.arange(30) % 3)
    for ev, opts in EVAL_OPTS.items():
        for opt, val in itertools.product(opts, EVAL_BAD):
            yield ["eval-embeddings", str(npz), "--evaluators", ev, "--eval-opt", f"{ev}.{opt}={val}"]
    for i, text in enumerate([b"\xff\xfe\x00garbage", b"epochs: [", b"- a\n- b", b"{}" * 5000, b"epochs: !!python/object:os.system ls"]):
        p = work / f"cfg{i}.yaml"
        p.write_bytes(text)
        yield ["train", "--config", str(p), *TINY, *out]
    for method_opt in ["proj_dim=0", "proj_dim=1e12", "temperature=-1", "temperature=[1]", "nosuch=1", "=1"]:
        yield ["train", *TINY, "--opt", method_opt, *out]
    for bb in ["timm:no_such_model", "cnn-small", "resnet", "timm:"]:
        yield ["train", *TINY, "--backbone", bb, *out]
    if ckpt is not None:
        raw = ckpt.read_bytes()
        for i, off in enumerate(np.linspace(0, len(raw) - 1, 12).astype(int)):
            p = work / f"flip{i}" / "checkpoints" / "epoch_0001.safetensors"
            p.parent.mkdir(parents=True)
            b = bytearray(raw)
            b[off] ^= 0xFF
            p.write_bytes(bytes(b))
            yield ["eval", str(p), "--dataset", "mog2d", "--evaluators", "knn", "--device", "cpu"]
        for i, n in enumerate([0, 7, 8, 100, len(raw) // 2, len(raw) - 1]):
            p = work / f"cut{i}" / "checkpoints" / "epoch_0001.safetensors"
            p.parent.mkdir(parents=True)
            p.write_bytes(raw[:n])
            yield ["eval", str(p), "--dataset", "mog2d", "--evaluators", "knn", "--device", "cpu"]
    for i, cut in enumerate([0.1, 0.5, 0.99]):
        root = work / f"fm{i}"
        d = root / "fashion-mnist"
        d.mkdir(parents=True)
        for name, shape in [("train-images-idx3-ubyte", (30, 28, 28)), ("train-labels-idx1-ubyte", (30,)),
                            ("t10k-images-idx3-ubyte", (10, 28, 28)), ("t10k-labels-idx1-ubyte", (10,))]:
            arr = rng.integers(0, 10, shape).astype(np.uint8)
            blob = gzip.compress(bytes([0, 0, 8, len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape)
                                 + arr.tobytes())
            (d / f"{name}.gz").write_bytes(blob[: int(len(blob) * cut)] if name.startswith("train-images") else blob)
        yield ["train", "--dataset", "fashion-mnist", "--data-root", str(root), "--preset", "smoke", *out]


def run_one(argv):
    from ssl_bench.cli import main

    err, outbuf = io.StringIO(), io.StringIO()
    tb = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(outbuf):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
        except BaseException:  # noqa: BLE001 - what we count
            code, tb = None, traceback.format_exc()
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    if tb is not None:
        return "traceback", tb.strip().splitlines()[-1]
    if code == 2 and len(lines) == 1 and lines[0].startswith("ssl-bench: error: "):
        return "clean", lines[0]
    if code == 0:
        return "accepted", ""
    return "other", f"status {code}: " + " | ".join(lines)[-300:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    work = Path(a.out or tempfile.mkdtemp(prefix="ssl-bench-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from conftest import tiny_config

    from ssl_bench.trainer import train

    ckpt = train(tiny_config(epochs=1, evaluators=["knn"]), work / "good").checkpoint
    counts: dict[str, int] = {}
    report = []
    for argv in invocations(work, ckpt):
        kind, line = run_one(argv)
        counts[kind] = counts.get(kind, 0) + 1
        short = " ".join(x if len(x) < 60 else "..." + x[-40:] for x in argv)
        report.append({"argv": short, "outcome": kind, "line": line})
        if a.verbose or kind in ("traceback", "other"):
            print(f"{kind:9s} {short}\n          {line}", file=sys.__stderr__, flush=True)
    print(json.dumps({"tries": sum(counts.values()), **counts}, sort_keys=True))
    (work / "fuzz_report.json").write_text(json.dumps(report, indent=1))
    print(f"report: {work / 'fuzz_report.json'}")
    return 0 if not counts.get("traceback") and not counts.get("other") else 1


if __name__ == "__main__":
    raise SystemExit(main())
