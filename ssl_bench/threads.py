"""Torch's CPU thread count: fixed by default, a fair share of a shared machine on request.

By default the ``ssl-bench`` command leaves torch's thread count as torch starts it
(``$OMP_NUM_THREADS``, else the machine's cores) for the whole process: the thread count decides
the order of floating-point reductions, so a fixed count makes the same command on the same
machine give the same bits, however loaded the machine is. ``SSL_BENCH_THREADS=N`` (or a config's
``num_threads``, ``--set num_threads=N``) pins another count.

``SSL_BENCH_THREADS=fair`` opts into the fair-share policy, for machines that other processes
share. Torch runs its CPU ops on an OpenMP team (on Linux, GNU libgomp) whose threads spin while
they wait for each other. On a quiet machine that is the fastest choice; when another CPU-bound
process holds one of the cores, the team's threads spin-wait on a partner that is not running,
and a step costs several times its quiet figure (measurements: ``docs/benchmarks.md``, section 7,
``benchmarks/threads_under_load.py``).

The fair-share policy watches how much CPU the *other* processes use (``/proc/stat`` minus this
process's own time, over the last :data:`INTERVAL` seconds) and sets torch's intra-op thread count
to the cores they leave free: ``round(cpus - others)``, at least 1, at most the count the process
started with. So a quiet machine keeps every core, and a busy one costs its fair share rather
than several times it. The count then follows the machine's load, so two runs under it can
differ in the last bits of their weights. It is off in library use until :func:`enable` is
called; a config's ``num_threads`` pins the count.
"""

from __future__ import annotations

import os
import time

#: seconds between two looks at the machine's load (each look reads one line of /proc/stat)
INTERVAL = 2.0
#: the environment variable of the ``ssl-bench`` command: ``fixed`` (default: the count torch starts
#: with), a thread count, or ``fair`` (the fair-share policy)
ENV = "SSL_BENCH_THREADS"


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (user, nice, system, irq, softirq, steal), or
    None where ``/proc/stat`` cannot be read (not Linux)."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu" or len(fields) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class FairShare:
    """Adapts ``torch.set_num_threads`` to the other processes' CPU use; :meth:`poll` is cheap
    (a clock read) between looks and can be called every step."""

    def __init__(self, max_threads: int | None = None, interval: float = INTERVAL) -> None:
        import torch

        self.max = max(1, max_threads or torch.get_num_threads())
        self.cpus = _cpus()
        self.interval = interval
        self.last = (time.monotonic(), _busy_seconds(), _own_seconds())
        self.others = 0.0  # cores the other processes used over the last window

    def want(self, others: float) -> int:
        """Threads for ``others`` cores in use by other processes."""
        return max(1, min(self.max, round(self.cpus - others)))

    def poll(self) -> int:
        import torch

        now = time.monotonic()
        t0, busy0, own0 = self.last
        if now - t0 < self.interval or busy0 is None:
            return torch.get_num_threads()
        busy, own = _busy_seconds(), _own_seconds()
        if busy is None:
            return torch.get_num_threads()
        self.others = max(0.0, (busy - busy0) - (own - own0)) / (now - t0)
        self.last = (now, busy, own)
        n = self.want(self.others)
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        return n


_policy: FairShare | None = None
#: :func:`configure`'s setting until torch is imported (then :func:`adapt` applies it): reading the
#: setting must not import torch, so that a bad config is reported in well under a second
_pending: str | None = None


def enable(max_threads: int | None = None) -> FairShare:
    """Turn the fair-share policy on for this process (``SSL_BENCH_THREADS=fair`` does)."""
    global _policy, _pending
    _policy, _pending = FairShare(max_threads), None
    return _policy


def pin(n: int) -> None:
    """A fixed thread count: the policy is off from now on."""
    import torch

    global _policy, _pending
    _policy, _pending = None, None
    torch.set_num_threads(n)


def _apply_pending() -> None:
    v = _pending
    if v == "fair":
        enable()
    elif v is not None:
        pin(int(v))


def adapt() -> None:
    """Apply the policy, if on (training steps, embedding batches and evaluators call this)."""
    if _pending is not None:
        _apply_pending()
    if _policy is not None:
        _policy.poll()


def policy() -> str:
    """``fair`` when the fair-share policy is on (or set and not yet applied), else ``fixed``: what
    result rows record next to the thread count (:func:`ssl_bench.provenance.hardware`)."""
    return "fair" if _policy is not None or _pending == "fair" else "fixed"


def configure(value: str | None = None) -> str:
    """The ``ssl-bench`` command's setting, from ``value`` or ``$SSL_BENCH_THREADS``: ``fixed``
    (the default, also when unset or empty) keeps the count torch starts with; a positive integer
    pins that count; ``fair`` turns the fair-share policy on. Checked now, applied now if torch is
    already imported, else at the first :func:`adapt` (the start of a training, an embedding batch,
    an evaluator). Returns the setting."""
    import sys

    from .errors import ConfigError

    global _pending, _policy
    v = (os.environ.get(ENV, "") if value is None else value).strip() or "fixed"
    if v not in ("fixed", "fair") and (not v.isdigit() or int(v) < 1):
        raise ConfigError(f"{ENV} must be 'fixed', 'fair' or a thread count >= 1, got {v!r}")
    if v == "fixed":  # torch's own count, never changed: nothing to apply
        _pending, _policy = None, None
        return v
    _pending = v
    if "torch" in sys.modules:
        _apply_pending()
    return v
