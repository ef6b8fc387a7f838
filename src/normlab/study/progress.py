"""A study's progress while it trains: runs finished out of runs added, the units (packs and
runs alone) in flight, the elapsed clock and an ETA from the calibrated cost of the remaining
work.

The runner feeds a :class:`ProgressTracker` (units added, each run dispatched, each result); a
display renders :meth:`ProgressTracker.snapshot` whenever it refreshes, so the clock ticks while
nothing finishes (a pack of 25 runs at batch 2 trains for minutes and returns its results all at
once). The total grows when the lr grid extension or a round of the adaptive protocol adds runs;
under a budget the display shows the budget spent (earlier invocations included) and left.

Costs are calibrated seconds on one worker (:meth:`.dryrun.Estimate.unit_seconds`); without a
calibration they are relative only (a run's training examples), and the ETA waits for the first
finished unit. :func:`eta_seconds` scales the remaining cost by the measured pace rather than
averaging seconds per finished run: a study's first units are its longest (packs of small
batches, ``plan.cost_order``), so a per-run average from them misjudges the rest, and a run
alone at batch 128 costs a fraction of a pack of 25 runs at batch 2.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def eta_seconds(
    elapsed: float,
    finished: Sequence[tuple[float, float]],
    in_flight: Sequence[tuple[float, float]],
    queued: Sequence[float],
    calibrated: bool = True,
    calibrated_pace: float | None = None,
    measured: Sequence[tuple[float, float]] | None = None,
) -> float | None:
    """Seconds until the work is done; None when nothing allows a guess yet.

    ``elapsed``: wall seconds since training began; ``finished``: (cost, wall seconds from
    dispatch to result) per finished unit; ``in_flight``: (cost, wall seconds since dispatch)
    per unit in flight; ``queued``: the cost of each unit not handed out yet. ``calibrated``:
    costs are seconds on one worker (else relative units); ``calibrated_pace``: wall seconds per
    calibrated second before anything is measured (the estimate's wall time over its one-worker
    time: about 1 / workers); ``measured``: the (cost, seconds) pairs that measure a unit's
    speed, default ``finished`` (:class:`ProgressTracker` leaves out units whose time includes
    a worker's start once others have finished).

    A unit's speed (cost per wall second) is the measured units' (1 for calibrated costs before
    any finished). A unit in flight is credited its time in flight at that speed, at most its
    cost. The pace is the elapsed time per cost done (finished plus credited), which includes
    the workers' parallelism and the machine's load, and the ETA is the remaining cost at that
    pace; never less than the longest remaining unit at one unit's speed (the last units of a
    study may keep one worker busy while the others idle).
    """
    measured = finished if measured is None else measured
    if measured:
        speed = sum(cost for cost, _ in measured) / max(sum(took for _, took in measured), 1e-9)
    elif calibrated:
        speed = 1.0
    else:
        return None
    credit = [min(cost, ran * speed) for cost, ran in in_flight]
    done = sum(cost for cost, _ in finished) + sum(credit)
    left = [cost - part for (cost, _), part in zip(in_flight, credit, strict=True)] + list(queued)
    if done > 0 and elapsed > 0:
        pace = elapsed / done
    elif calibrated_pace is not None:
        pace = calibrated_pace
    else:
        return None
    return max(sum(left) * pace, max(left, default=0.0) / speed)


@dataclass(frozen=True)
class Snapshot:
    """What a progress display shows at one moment."""

    phase: str
    """What the study is doing: ``starting``, ``calibrating``, ``training``, ..."""
    total: int
    """Runs to train in this invocation, growing when runs are added."""
    finished: int
    """Runs whose result arrived (done, diverged or failed)."""
    packs: int
    """Packs in flight."""
    packed_runs: int
    """Runs in the packs in flight."""
    alone: int
    """Runs in flight alone."""
    elapsed: float
    """Seconds since the tracker started."""
    eta: float | None
    """Seconds left (:func:`eta_seconds`); None while unknown."""
    budget: float | None = None
    """The study's wall-time budget (seconds, all invocations); None: no cap."""
    budget_spent: float = 0.0
    """Seconds of the budget spent: earlier invocations' plus this one's elapsed."""


@dataclass
class _Unit:
    runs: tuple[str, ...]
    cost: float
    dispatched: float | None = None
    finished: float | None = None
    waiting: int = 0
    """Results still to come."""
    leg: int = 0
    """Which :meth:`ProgressTracker.add` call added it (the executors start workers per call)."""
    cold: bool = False
    """Dispatched before any unit of its leg finished: its time includes a worker's start
    (spawning a process and importing torch took 10 to 30 s on a loaded machine)."""


class ProgressTracker:
    """Units of work, when each was dispatched and finished; thread-safe (a display thread
    reads it while the driver writes). ``clock``: seconds, monotonic (tests pass a fake)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._units: list[_Unit] = []
        self._unit_of: dict[str, _Unit] = {}
        self._started = clock()
        self._training_started: float | None = None
        self._phase = "starting"
        self._calibrated = False
        self._calibrated_pace: float | None = None
        self._legs = 0
        self._budget: float | None = None
        self._spent_before = 0.0

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self._phase = phase

    def set_calibration(self, pace: float | None, costs: Sequence[float] = ()) -> None:
        """Costs are calibrated seconds from now on: ``costs`` replace those of the first units
        added, in order (added before the calibration, so that the display counts them while it
        runs); ``pace``: the estimate's wall seconds per one-worker second (:func:`eta_seconds`)."""
        with self._lock:
            self._calibrated, self._calibrated_pace = True, pace
            for unit, cost in zip(self._units, costs, strict=False):
                unit.cost = float(cost)

    def set_budget(self, total: float | None, spent_before: float) -> None:
        """The adaptive protocol's budget (seconds; None: none) and what earlier invocations
        spent of it; the display shows spent and left."""
        with self._lock:
            self._budget, self._spent_before = total, spent_before

    def add(self, units: Sequence[Sequence[str]], costs: Sequence[float]) -> None:
        """Units of work (their run ids) to be handed out, with their costs."""
        with self._lock:
            self._legs += 1
            for runs, cost in zip(units, costs, strict=True):
                unit = _Unit(tuple(runs), float(cost), waiting=len(runs), leg=self._legs)
                self._units.append(unit)
                self._unit_of.update((run_id, unit) for run_id in runs)

    def dispatched(self, run_id: str) -> None:
        with self._lock:
            unit = self._unit_of.get(run_id)
            if unit is not None and unit.dispatched is None:
                unit.dispatched = self._clock()
                unit.cold = not any(
                    u.finished is not None for u in self._units if u.leg == unit.leg
                )
                if self._training_started is None:  # the pace counts training, not set-up
                    self._training_started = unit.dispatched

    def finished(self, run_id: str) -> None:
        with self._lock:
            unit = self._unit_of.get(run_id)
            if unit is None or unit.finished is not None:
                return
            unit.waiting -= 1
            if unit.waiting == 0:
                unit.finished = self._clock()
                if unit.dispatched is None:  # a result without a dispatch: took no time seen
                    unit.dispatched = unit.finished

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self._clock()
            done = [u for u in self._units if u.finished is not None]
            warm = [u for u in done if not u.cold]
            flying = [u for u in self._units if u.finished is None and u.dispatched is not None]
            queued = [u for u in self._units if u.dispatched is None]
            eta = None
            if self._training_started is not None or self._calibrated:
                started = self._training_started
                eta = eta_seconds(
                    0.0 if started is None else now - started,
                    [(u.cost, u.finished - u.dispatched) for u in done],  # type: ignore[operator]
                    [(u.cost, now - u.dispatched) for u in flying],  # type: ignore[operator]
                    [u.cost for u in queued],
                    self._calibrated,
                    self._calibrated_pace,
                    measured=[(u.cost, u.finished - u.dispatched) for u in warm] or None,  # type: ignore[operator]
                )
            packs = [u for u in flying if len(u.runs) > 1]
            return Snapshot(
                phase=self._phase,
                total=sum(len(u.runs) for u in self._units),
                finished=sum(len(u.runs) - u.waiting for u in self._units),
                packs=len(packs),
                packed_runs=sum(len(u.runs) for u in packs),
                alone=len(flying) - len(packs),
                elapsed=now - self._started,
                eta=eta,
                budget=self._budget,
                budget_spent=self._spent_before + now - self._started,
            )


def clock_text(seconds: float | None) -> str:
    """``H:MM:SS``; ``-:--:--`` when unknown."""
    if seconds is None:
        return "-:--:--"
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def in_flight_text(snapshot: Snapshot) -> str:
    """``training: 2 packs (50 runs), 1 run alone``; the phase alone when nothing is in flight."""
    parts = []
    if snapshot.packs:
        packs = "pack" if snapshot.packs == 1 else "packs"
        runs = "run" if snapshot.packed_runs == 1 else "runs"
        parts.append(f"{snapshot.packs} {packs} ({snapshot.packed_runs} {runs})")
    if snapshot.alone:
        parts.append(f"{snapshot.alone} {'run' if snapshot.alone == 1 else 'runs'} alone")
    return f"{snapshot.phase}: {', '.join(parts)}" if parts else snapshot.phase


def status_text(snapshot: Snapshot) -> str:
    """Two lines: runs, elapsed clock and ETA; then what is in flight. An ETA run out while
    runs remain is ``overdue`` (the units in flight took longer than their cost at the pace)."""
    eta = clock_text(snapshot.eta)
    if snapshot.eta is not None and snapshot.eta < 0.5 and snapshot.finished < snapshot.total:
        eta = "overdue"
    budget = ""
    if snapshot.budget is not None:
        left = max(0.0, snapshot.budget - snapshot.budget_spent)
        budget = (
            f"  budget {clock_text(snapshot.budget)}: spent {clock_text(snapshot.budget_spent)},"
            f" left {clock_text(left)}"
        )
    return (
        f"{snapshot.finished}/{snapshot.total} runs  elapsed {clock_text(snapshot.elapsed)}  "
        f"ETA {eta}{budget}\n{in_flight_text(snapshot)}"
    )
