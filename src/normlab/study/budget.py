"""The budget is a promise: predict what a batch of runs will cost before starting it.

A study's budget (``[study] budget``, ``--budget``) caps its wall time over every invocation:
the time already spent is the sum of its recorded legs (``store.legs``) plus this invocation's
clock. Before each round (and before the tuning phase) the planner predicts the round's wall
time and starts it only if the prediction fits in what is left; a study out of budget ends with
the precision it reached, and the same command with a larger budget continues.

The prediction: each unit of work (a pack or a run alone, ``work.work_units``) costs its
calibrated one-worker seconds (:meth:`.dryrun.Estimate.unit_seconds`), or, for a configuration
the calibration did not time (a GPU run, the Ray executor), the mean measured wall time of the
finished runs of its (norm, batch size) times its runs; units go to the workers longest first
(the makespan, as the dry run schedules them), plus :data:`START_SECONDS` for the workers to
start when they are separate processes. That sum is then multiplied by the *pace*: measured wall time over predicted, over the
batches this invocation trained (which covers a slower start, a loaded machine, workers sharing
memory bandwidth); before any, the pace of the study's finished runs (measured seconds per run
over calibrated seconds, at least 1), else 1. Work starts only if its prediction, with
:data:`HEADROOM` to spare, fits in what is left.
"""

from __future__ import annotations

import heapq
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from normlab.train import RunConfig

from .work import work_units

START_SECONDS = 3.0
"""Seconds each batch handed to the executor costs before its first run trains (the local
executor spawns its worker processes, which import torch: 2 to 4 s on the 2-core development
machine); the pace is learned on the time past it."""

HEADROOM = 0.2
"""Work starts only if its prediction plus this fraction fits in what is left: rounds of equal
size took from 0.8 to 1.2 times their mean on the loaded 2-core development machine (tests and
other studies beside them), and the budget is a promise."""


def with_headroom(predicted: float) -> float:
    """``predicted`` seconds with :data:`HEADROOM` to spare."""
    return predicted * (1.0 + HEADROOM)


UnitCost = Callable[[list[RunConfig]], float | None]
"""Calibrated one-worker seconds of a unit of work; None when not calibrated."""


class Budget:
    """Wall time allowed, spent and left (seconds); ``total`` None: no cap. ``clock``:
    monotonic seconds (tests pass a fake)."""

    def __init__(
        self,
        total: float | None,
        spent_before: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
        started: float | None = None,
    ) -> None:
        self.total = total
        self.spent_before = spent_before
        self._clock = clock
        self._started = clock() if started is None else started
        """When this invocation began (its leg counts from there)."""

    def now(self) -> float:
        """The budget's clock (what batches are timed with)."""
        return self._clock()

    def spent(self) -> float:
        """Earlier invocations' legs plus this invocation so far."""
        return self.spent_before + self._clock() - self._started

    def left(self) -> float | None:
        return None if self.total is None else self.total - self.spent()

    def allows(self, predicted: float | None) -> bool:
        """Whether work predicted to take ``predicted`` seconds fits in what is left with
        :data:`HEADROOM` to spare (work whose cost cannot be predicted fits while any time is
        left)."""
        left = self.left()
        if left is None:
            return True
        return left > 0 if predicted is None else with_headroom(predicted) <= left


def makespan(durations: Sequence[float], workers: int) -> float:
    """Finish time of ``durations`` handed longest first to whichever of ``workers`` is free."""
    loads = [0.0] * max(1, min(workers, len(durations)))
    for duration in sorted(durations, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + duration)
    return max(loads)


class CostModel:
    """Predicted wall seconds of a batch of runs (see the module docstring)."""

    def __init__(
        self,
        unit_cost: UnitCost,
        workers: int,
        pack: str,
        records: Sequence[dict[str, Any]] = (),
        pack_sizes: dict[str, int] | None = None,
    ) -> None:
        self.unit_cost = unit_cost
        self.workers = max(1, workers)
        self.pack = pack
        self.pack_sizes = dict(pack_sizes or {})
        """The study's pack size per configuration (``Execution.pack_sizes``): units are cut
        as the executors cut them."""
        self._predicted: list[float] = []
        self._measured: list[float] = []
        self._run_seconds: dict[tuple[str, int], list[float]] = defaultdict(list)
        self._prior = 1.0
        self.learn(records)

    def learn(self, records: Sequence[dict[str, Any]]) -> None:
        """Measured run times of finished runs: the fallback cost of uncalibrated units, and
        the pace before this invocation measured a batch of its own."""
        self._run_seconds.clear()
        calibrated, measured = 0.0, 0.0
        for record in records:
            seconds = record.get("wall_time")
            if record.get("status") not in ("done", "diverged") or not seconds:
                continue
            config = record["config"]
            self._run_seconds[(config["norm"], config["batch_size"])].append(float(seconds))
            cost = self.unit_cost([RunConfig.from_dict(config)])
            if cost:
                calibrated, measured = calibrated + cost, measured + float(seconds)
        # A run's wall time excludes dispatch and a packed run's is its share of the pack: the
        # prior only ever slows the calibration down, never speeds it up.
        self._prior = max(1.0, measured / calibrated) if calibrated > 0 else 1.0

    @property
    def pace(self) -> float:
        """Measured wall seconds per predicted second (see the module docstring)."""
        if self._predicted and sum(self._predicted) > 0:
            return sum(self._measured) / sum(self._predicted)
        return self._prior

    def unit_seconds(self, unit: list[RunConfig]) -> float | None:
        cost = self.unit_cost(unit)
        if cost is not None:
            return cost
        seconds = self._run_seconds.get((unit[0].norm, unit[0].batch_size))
        if not seconds:
            seconds = [s for values in self._run_seconds.values() for s in values]
        return statistics.fmean(seconds) * len(unit) if seconds else None

    def raw(self, configs: Sequence[RunConfig]) -> float | None:
        """The makespan of ``configs`` on the workers, and the workers' start where the local
        executor spawns them (more than one worker and one unit; one trains in the driver),
        before the pace; None if unknown."""
        if not configs:
            return 0.0
        units = work_units(list(configs), self.pack, self.pack_sizes)
        costs = [self.unit_seconds(unit) for unit in units]
        if any(cost is None for cost in costs):
            return None
        start = START_SECONDS if self.workers > 1 and len(units) > 1 else 0.0
        return makespan([c for c in costs if c is not None], self.workers) + start

    def predict(self, configs: Sequence[RunConfig]) -> float | None:
        """Predicted wall seconds of training ``configs`` now; None if no cost is known."""
        raw = self.raw(configs)
        return None if raw is None else raw * self.pace

    def observe(self, configs: Sequence[RunConfig], seconds: float) -> None:
        """A batch of ``configs`` took ``seconds``: the pace learns from it."""
        raw = self.raw(configs)
        if raw:
            self._predicted.append(raw)
            self._measured.append(seconds)
