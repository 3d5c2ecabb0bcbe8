"""The fair-share thread policy (ssl_bench.threads): arithmetic on a scripted clock and /proc/stat,
one real competing process, and the SSL_BENCH_THREADS setting of the command."""

import subprocess
import sys
import time

import pytest
import torch

from ssl_bench import threads
from ssl_bench.cli import main
from ssl_bench.errors import ConfigError


def test_threads_follow_the_cores_the_other_processes_leave(monkeypatch):
    clock = {"now": 0.0, "busy": 100.0, "own": 10.0}
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(threads, "_busy_seconds", lambda: clock["busy"])
    monkeypatch.setattr(threads, "_own_seconds", lambda: clock["own"])
    monkeypatch.setattr(threads, "_cpus", lambda: 2)
    fs = threads.FairShare(max_threads=2, interval=2.0)

    def window(seconds, machine, ours):
        clock["now"] += seconds
        clock["busy"] += machine
        clock["own"] += ours
        return fs.poll()

    assert window(2.0, 4.0, 4.0) == 2 and fs.others == 0.0  # only this process: both cores
    assert window(2.0, 4.0, 2.0) == 1 and fs.others == pytest.approx(1.0)  # another one holds a core
    assert torch.get_num_threads() == 1
    assert window(1.0, 2.0, 2.0) == 1  # within the interval: no look, no change
    assert window(1.5, 3.0, 3.0) == 2 and fs.others == pytest.approx(0.0)  # it left: both cores again
    assert window(2.0, 4.0, 3.2) == 2  # 0.4 of a core used by others: round(1.6) = 2
    assert window(2.0, 4.0, 2.8) == 1  # 0.6: round(1.4) = 1
    assert [fs.want(x) for x in (0.0, 0.49, 0.51, 1.0, 2.0, 7.0)] == [2, 2, 1, 1, 1, 1]
    big = threads.FairShare(max_threads=4)
    big.cpus = 8
    assert [big.want(x) for x in (0.0, 3.0, 5.0, 6.6)] == [4, 4, 3, 1]  # never above the starting count


def test_a_real_competitor_takes_a_core_away():
    """A busy-looping process next to this one: the policy, told the machine has 2 cores, drops
    to one thread while it runs."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        fs = threads.FairShare(max_threads=2, interval=0.5)
        fs.cpus = 2
        x = torch.randn(256, 256)
        seen = []
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            x = torch.tanh(x @ x.T / 256)  # this process works too
            seen.append((fs.poll(), fs.others))
        assert max(o for _, o in seen) > 0.6, seen  # the competitor's core was seen
        assert seen[-1][0] == 1, seen
    finally:
        hog.kill()
        hog.wait()


def test_configure_reads_the_setting(monkeypatch):
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.configure() == "3" and torch.get_num_threads() == 3 and threads._policy is None
    assert threads.configure("fair") == "fair" and isinstance(threads._policy, threads.FairShare)
    threads.adapt()  # on, cheap
    threads.pin(2)
    assert threads._policy is None
    for bad in ("0", "two", "-1"):
        with pytest.raises(ConfigError, match="SSL_BENCH_THREADS must be 'fixed', 'fair' or a thread count"):
            threads.configure(bad)


@pytest.mark.parametrize("setting", [None, "", "fixed"])
def test_the_default_is_a_fixed_count_and_fair_is_opt_in(setting, monkeypatch):
    """Unset, empty or ``fixed``: the count torch started with, never changed by the machine's load
    (the same command on the same machine gives the same bits); ``fair`` only when asked for."""
    if setting is None:
        monkeypatch.delenv(threads.ENV, raising=False)
    else:
        monkeypatch.setenv(threads.ENV, setting)
    threads.pin(1)
    threads.enable()  # whatever was on before: the setting turns it off
    assert threads.configure() == "fixed"
    assert threads._policy is None and threads._pending is None and threads.policy() == "fixed"
    threads.adapt()
    assert torch.get_num_threads() == 1


def test_the_command_runs_on_a_fixed_count_unless_told_fair(monkeypatch, capsys):
    monkeypatch.delenv(threads.ENV, raising=False)
    assert main(["list", "methods"]) == 0
    assert threads.policy() == "fixed" and threads._policy is None
    monkeypatch.setenv(threads.ENV, "fair")
    assert main(["list", "methods"]) == 0
    assert threads.policy() == "fair"


def test_the_command_says_what_is_wrong_with_the_setting(monkeypatch, capsys):
    monkeypatch.setenv(threads.ENV, "lots")
    assert main(["list", "methods"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SSL_BENCH_THREADS must be 'fixed', 'fair' or a thread count >= 1, got 'lots'" in err[0]


def test_the_setting_is_read_without_importing_torch_and_applied_at_the_first_adapt():
    code = (
        "import sys\n"
        "from ssl_bench import threads\n"
        "assert threads.configure('3') == '3' and 'torch' not in sys.modules\n"
        "import torch\n"
        "threads.adapt()\n"
        "assert torch.get_num_threads() == 3, torch.get_num_threads()\n"
        "threads.configure('fair')\n"
        "assert isinstance(threads._policy, threads.FairShare)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_result_rows_name_the_thread_policy(monkeypatch):
    """The hardware string of every result row says whether the thread count was pinned or set by
    the fair-share policy: the same run can differ in the last bits between the two."""
    from ssl_bench import provenance

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_policy", None)
    monkeypatch.setattr(threads, "_pending", None)
    try:
        threads.pin(1)
        assert threads.policy() == "fixed" and provenance.hardware("cpu").endswith(" threads=1 (fixed)")
        assert threads.configure("fair") == "fair" and threads.policy() == "fair"
        assert provenance.hardware("cpu").endswith(" (fair)")
        threads.configure("2")
        assert threads.policy() == "fixed" and provenance.hardware("cpu").endswith(" threads=2 (fixed)")
    finally:
        threads.pin(before)
