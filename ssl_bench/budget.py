"""Equal wall-clock training: ``time_budget`` (config key, ``--time-budget SECONDS``).

A budgeted run does not train a number of epochs: before training, it measures its own throughput
(:func:`measure`: untimed warm-up steps, then the median of timed steps, on a throw-away copy of the
method, so the real weights and random state are untouched), and :func:`plan` fixes the total
steps so that the probe plus the training fill the budget. The learning-rate and EMA schedules are
built for those steps, so they end when the budget ends, and training stops there.

Under a budget ``epochs`` (config key) is not a number of passes over the data but how many equal
parts the steps are cut into (checkpoints and the k-NN monitor run between parts: the ``speedrun``
preset cuts its budget into 5, so a run has a 5-point time-to-accuracy curve). The batches follow
the global step through the seeded permutation of each pass over the training set (pass ``p`` is
the permutation of epoch ``p`` of an unbudgeted run), so a part may end mid-pass and no image is
seen twice before every image has been seen once. Budgeted runs need the training images in memory.

The budget counts *training* seconds, the run's ``train_seconds``: the probe plus the training
steps, not the k-NN monitor nor the checkpoint writes (both run between epochs). A run overshoots
when its steps turn out slower than the probe measured (a loaded machine), or when the budget
fits fewer steps than ``epochs`` (every part trains one step at least); ``time_budget``,
``train_steps`` and ``train_device`` in its result rows say what it had and reached.

The plan is stored in the resume state: ``--resume`` continues to the same total steps.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass

from .errors import ConfigError

#: Steps run before timing starts (allocator, oneDNN / cuDNN kernel choice, torch.compile).
WARMUP_STEPS = 1
#: Timed steps: at least this many, and for at least ``MIN_FRACTION`` of the budget ...
MIN_STEPS = 3
MIN_FRACTION = 0.03
#: ... but the probe stops after this fraction of the budget (or ``MAX_STEPS``) whatever it has.
MAX_FRACTION = 0.10
MAX_STEPS = 200


@dataclass(frozen=True)
class BudgetPlan:
    """What a budgeted run decided before it trained."""

    budget: float  # seconds
    probe_seconds: float  # the whole probe, warm-up included (counted in the budget)
    seconds_per_step: float  # measured by the probe
    total_steps: int
    epochs: int
    steps_per_epoch: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BudgetPlan:
        return cls(
            budget=float(d["budget"]),
            probe_seconds=float(d["probe_seconds"]),
            seconds_per_step=float(d["seconds_per_step"]),
            total_steps=int(d["total_steps"]),
            epochs=int(d["epochs"]),
            steps_per_epoch=int(d["steps_per_epoch"]),
        )


def measure(
    step_once: Callable[[int], None], budget: float, clock: Callable[[], float], settle: float = 0.0
) -> tuple[float, float]:
    """(probe seconds, seconds per step): ``step_once(i)`` runs step ``i`` of the probe.
    Untimed warm-up steps (at least ``WARMUP_STEPS``, and for at least ``settle`` seconds: the time
    the fair-share thread policy takes to choose its thread count), then timed steps until both
    ``MIN_STEPS`` and ``MIN_FRACTION`` of the budget are reached, or ``MAX_FRACTION`` of the budget /
    ``MAX_STEPS`` is. The seconds per step are the median of the timed steps (one step slowed by
    the other processes of a shared machine does not set the plan)."""
    start = clock()
    i = 0
    while i < WARMUP_STEPS or (clock() - start < settle and clock() - start < MAX_FRACTION * budget / 2):
        step_once(i)
        i += 1
    t0 = last = clock()
    times: list[float] = []
    while True:
        step_once(i + len(times))
        now = clock()
        times.append(now - last)
        last = now
        enough = len(times) >= MIN_STEPS and now - t0 >= MIN_FRACTION * budget
        if enough or len(times) >= MAX_STEPS or now - start >= MAX_FRACTION * budget:
            return now - start, max(statistics.median(times), 1e-9)


def plan(budget: float, probe_seconds: float, seconds_per_step: float, epochs: int) -> BudgetPlan:
    """The steps that fit ``budget`` after the probe, cut into ``epochs`` equal parts (at most
    ``epochs - 1`` steps of the estimate are dropped to make them equal). Every part has at least
    one step: on a machine too slow for that the run overshoots its budget (``train_seconds``
    says by how much). A budget the probe used up is a ConfigError."""
    left = budget - probe_seconds
    if left <= 0:
        raise ConfigError(
            f"time_budget {budget:g}s is too small: the throughput probe alone took {probe_seconds:.2f}s "
            f"(one step: {seconds_per_step:.3f}s)"
        )
    steps = max(math.floor(left / seconds_per_step + 1e-9), epochs)
    per_epoch = steps // epochs
    return BudgetPlan(budget, probe_seconds, seconds_per_step, per_epoch * epochs, epochs, per_epoch)
