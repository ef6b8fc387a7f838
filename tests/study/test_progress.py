"""Progress of a study: the ETA from the calibrated cost of the remaining work, a clock that
ticks while nothing finishes, packs in flight, a total that grows (fake clocks, no training)."""

from __future__ import annotations

import pytest

from normlab.study.progress import ProgressTracker, clock_text, eta_seconds, status_text


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_eta_is_the_remaining_calibrated_cost_at_the_measured_pace():
    # Two workers finished two units of 10 calibrated seconds in 20 s each (a loaded machine:
    # half speed). Left: four units of 5 s. Pace: 20 s elapsed per 20 s of cost done, so 20 s
    # of cost left take 20 s. An average per finished run (10 s) would say 40 s.
    eta = eta_seconds(20.0, [(10.0, 20.0), (10.0, 20.0)], [], [5.0, 5.0, 5.0, 5.0])
    assert eta == pytest.approx(20.0, rel=1e-12)
    # The same runs left, but dearer (two units of 20 s): the ETA follows the cost, not the count.
    assert eta_seconds(20.0, [(10.0, 20.0), (10.0, 20.0)], [], [20.0, 20.0]) == pytest.approx(
        40.0, rel=1e-12
    )


def test_eta_is_never_shorter_than_the_longest_unit_left_at_one_unit_s_speed():
    # Half speed measured; one unit of 30 s is left: one worker needs 60 s whatever the others do.
    assert eta_seconds(20.0, [(10.0, 20.0), (10.0, 20.0)], [], [30.0]) == pytest.approx(60.0)


def test_eta_before_any_result_credits_units_in_flight_and_grows_when_they_overrun():
    # Calibrated costs: at calibrated speed two units of 10 s in flight for 5 s are half done.
    early = eta_seconds(5.0, [], [(10.0, 5.0), (10.0, 5.0)], [10.0, 10.0])
    assert early == pytest.approx(15.0)  # 30 s of cost left at 5 s per 10 s done
    # 30 s later they have not finished: at most their cost is credited, the pace slows.
    late = eta_seconds(35.0, [], [(10.0, 35.0), (10.0, 35.0)], [10.0, 10.0])
    assert late == pytest.approx(35.0) and late > early
    # Nothing measured yet: the calibrated pace (about 1 / workers).
    assert eta_seconds(0.0, [], [(10.0, 0.0)], [10.0], calibrated_pace=0.5) == pytest.approx(10.0)
    # Relative (uncalibrated) costs say nothing about seconds until a unit finishes.
    assert eta_seconds(5.0, [], [(10.0, 5.0)], [10.0], calibrated=False) is None


def test_the_clock_ticks_while_nothing_finishes_and_packs_in_flight_show():
    clock = FakeClock()
    tracker = ProgressTracker(clock)
    tracker.set_calibration(0.5)
    tracker.set_phase("training")
    packs = [[f"a{i}" for i in range(25)], [f"b{i}" for i in range(25)], ["c"], ["d"]]
    tracker.add(packs, [100.0, 100.0, 4.0, 4.0])
    for run_id in ["a0", *packs[0][1:], *packs[1], "c"]:
        tracker.dispatched(run_id)
    first = tracker.snapshot()
    clock.now += 125.0
    later = tracker.snapshot()
    assert (first.finished, later.finished) == (0, 0)
    assert later.elapsed - first.elapsed == pytest.approx(125.0)
    text = status_text(later)
    assert "0/52 runs" in text and "elapsed 0:02:05" in text
    assert "training: 2 packs (50 runs), 1 run alone" in text
    assert later.eta is not None and "ETA -:--:--" not in text


def test_the_total_grows_when_runs_are_added_and_results_count_once():
    clock = FakeClock()
    tracker = ProgressTracker(clock)
    tracker.add([["a", "b"], ["c"]], [2.0, 1.0])
    for run_id in "abc":
        tracker.dispatched(run_id)
        tracker.finished(run_id)
    tracker.finished("c")  # a repeated result does not count twice
    assert (tracker.snapshot().finished, tracker.snapshot().total) == (3, 3)
    tracker.add([["d", "e"]], [2.0])  # e.g. the lr grid extension
    snapshot = tracker.snapshot()
    assert (snapshot.finished, snapshot.total) == (3, 5)


def test_a_worker_s_start_up_does_not_count_as_slow_training():
    # Two workers start (20 s each, say) with their first units of 10 s: those took 30 s. The
    # next unit takes its 10 s: the speed is 1, and the last unit is priced at 10 s, not 23.
    clock = FakeClock()
    tracker = ProgressTracker(clock)
    tracker.set_calibration(0.5)
    tracker.add([["a"], ["b"], ["c"], ["d"]], [10.0, 10.0, 10.0, 10.0])
    tracker.dispatched("a")
    tracker.dispatched("b")
    clock.now += 30.0
    tracker.finished("a")
    tracker.finished("b")
    tracker.dispatched("c")
    clock.now += 10.0
    tracker.finished("c")
    # 40 s for 30 s of cost: the pace is 4/3, and 10 s of cost are left.
    assert tracker.snapshot().eta == pytest.approx(40.0 / 3.0, rel=1e-12)


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "-:--:--"), (0.4, "0:00:00"), (125, "0:02:05"), (3725, "1:02:05")]
)
def test_clock_text(seconds, text):
    assert clock_text(seconds) == text


def test_the_budget_spent_and_left_include_earlier_invocations():
    from normlab.study.progress import ProgressTracker, status_text

    now = [0.0]
    tracker = ProgressTracker(lambda: now[0])
    tracker.set_budget(1800.0, 600.0)  # 30 min, 10 spent by an earlier invocation
    tracker.add([["a"]], [1.0])
    now[0] = 300.0
    snapshot = tracker.snapshot()
    assert (snapshot.budget, snapshot.budget_spent) == (1800.0, 900.0)
    assert "budget 0:30:00: spent 0:15:00, left 0:15:00" in status_text(snapshot)
    tracker.add([["b"], ["c"]], [1.0, 1.0])  # a round added: the total grows
    assert tracker.snapshot().total == 3
    assert "budget" not in status_text(ProgressTracker(lambda: 0.0).snapshot())
