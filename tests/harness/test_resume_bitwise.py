"""Kill-and-resume gives the bits of an uninterrupted run (#35 item 2), at an epoch boundary and
within an epoch (``--save-every-steps``), on 1 and on 2 pinned threads.

Each run is a real ``ssl-bench train`` process, killed with SIGKILL at a chosen point: an audit
hook counts the renames of ``resume.pt`` and kills the process just before the next rename of
any file, so the resume state on disk is exactly the chosen one and the kill does not depend on
timing. ``OMP_NUM_THREADS`` is the other count than ``SSL_BENCH_THREADS``: torch starts on one
count and the command's setting must be in force from the first step, the first resumed step
included (it once came after the first step, and a resumed run drifted from 1e-5 to 3e-2)."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import TORCH_THREADS

from ssl_bench.checkpoint import load_resume, read_encoder
from ssl_bench.trainer import _read_log

KILLER = textwrap.dedent("""
    import os, signal, sys
    after = int(os.environ.pop("KILL_AFTER_RESUME_WRITES"))
    seen = [0]
    def hook(event, args):
        if event != "os.rename":  # os.rename and os.replace
            return
        if seen[0] >= after:  # the first write after the chosen resume state never lands
            os.kill(os.getpid(), signal.SIGKILL)
        if os.path.basename(os.fspath(args[1])) == "resume.pt":
            seen[0] += 1
    sys.addaudithook(hook)
    from ssl_bench.cli import main
    sys.exit(main(sys.argv[1:]))
""")

# digits, 256 images in batches of 64: 4 steps per epoch, 3 epochs
ARGS = ["train", "--method", "simclr", "--dataset", "digits", "--preset", "smoke", "--epochs", "3",
        "--batch-size", "64", "--set", "train_subset=256", "--no-progress", "--device", "cpu"]


def _ssl_bench(out, threads, *extra, kill_after=None):
    env = {**os.environ, "SSL_BENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(3 - threads)}
    if kill_after is None:
        cmd = [sys.executable, "-m", "ssl_bench"]
    else:
        cmd = [sys.executable, "-c", KILLER]
        env["KILL_AFTER_RESUME_WRITES"] = str(kill_after)
    return subprocess.run(cmd + ARGS + ["--out", str(out), *extra], env=env, capture_output=True, text=True,
                          timeout=600)


def _final(out):
    (run_dir,) = list(out.iterdir())
    state, _ = read_encoder(run_dir / "checkpoints" / "epoch_0003.safetensors")
    log = [{k: v for k, v in r.items() if k != "seconds"} for r in _read_log(run_dir / "train_log.csv")]
    return state, log


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """{thread count: (final weights, train log)} of the uninterrupted run, trained by the same
    command in this process (the thread count pinned by SSL_BENCH_THREADS from the start)."""
    from ssl_bench import threads as threads_mod
    from ssl_bench.cli import main

    refs = {}
    try:
        for n in (1, 2):
            out = tmp_path_factory.mktemp(f"ref{n}") / "runs"
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv(threads_mod.ENV, str(n))
                assert main(ARGS + ["--out", str(out)]) == 0
            refs[n] = _final(out)
    finally:
        threads_mod.pin(TORCH_THREADS)
    return refs


# (--save-every-steps, resume states written before the kill, where the resume state is:
# (epochs done, next batch)): after epoch 1's end; after batch 2 of epoch 2 (writes: epoch 1
# batch 2, epoch 1 end, epoch 2 batch 2)
CASES = {"epoch-boundary": (0, 1, (1, 0)), "mid-epoch": (2, 3, (1, 2))}


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("where", list(CASES))
def test_kill_then_resume_is_bit_identical(where, threads, tmp_path, uninterrupted):
    every, kills_after, at = CASES[where]
    out = tmp_path / "runs"
    extra = ["--save-every-steps", str(every)] if every else []
    r = _ssl_bench(out, threads, *extra, kill_after=kills_after)
    assert r.returncode == -signal.SIGKILL, r.stderr
    state = load_resume(next(out.iterdir()) / "checkpoints" / "resume.pt")
    assert (state["epoch"], state.get("batch", 0)) == at
    r = _ssl_bench(out, threads, *extra, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"resumed after epoch {at[0]}" in r.stdout
    ref_w, ref_log = uninterrupted[threads]
    got_w, got_log = _final(out)
    assert ref_w.keys() == got_w.keys()
    diff = {k: float((ref_w[k].float() - got_w[k].float()).abs().max()) for k in ref_w}
    assert all(torch.equal(ref_w[k], got_w[k]) for k in ref_w), max(diff.values())
    assert got_log == ref_log
