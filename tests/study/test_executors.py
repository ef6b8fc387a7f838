"""Executors: failing runs are results, dispatch order and in-flight bound, threads pinned, and
a pool of spawned workers gives exactly the metrics of sequential runs at equal threads."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

import normlab.train
from normlab.errors import NormlabError
from normlab.study import executors
from normlab.study.executors import execute, run_local, train_pinned
from normlab.train import RunConfig, RunResult


def per_run(train_run):
    """The executors call the engine with a unit (list) of runs; fake it one run at a time."""
    return lambda unit, dataset, **options: [train_run(config, dataset) for config in unit]


def configs(count: int) -> list[RunConfig]:
    base = RunConfig(
        dataset="synthetic",
        dataset_options={"num_examples": 200},
        depth=8,
        widths=(4, 4, 4),
        epochs=1,
        batch_size=16,
        lr=0.05,
    )
    norms = ["bn", "none", "gn"]
    return [base.replace(norm=norms[i % 3], seed=i // 3) for i in range(count)]


class Recorder:
    """Collects dispatch / result events in the order the executor reports them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.results: dict[str, RunResult] = {}

    def on_dispatch(self, config: RunConfig) -> None:
        self.events.append(("dispatch", config.run_id))

    def on_result(self, config: RunConfig, result: RunResult) -> None:
        assert result.run_id == config.run_id
        self.events.append(("result", config.run_id))
        self.results[config.run_id] = result

    def max_in_flight(self) -> int:
        in_flight = peak = 0
        for kind, _ in self.events:
            in_flight += 1 if kind == "dispatch" else -1
            peak = max(peak, in_flight)
        return peak


def test_a_failing_run_is_recorded_with_its_traceback_and_the_rest_go_on(monkeypatch):
    runs = configs(4)
    real_train_run = normlab.train.train_run

    def train_run(config, dataset):
        if config == runs[1]:
            raise RuntimeError("boom in the engine")
        return real_train_run(config, dataset)

    monkeypatch.setattr(executors, "train_runs", per_run(train_run))
    recorder = Recorder()
    run_local(runs, 1, recorder.on_result, threads=1, on_dispatch=recorder.on_dispatch)
    failed = recorder.results[runs[1].run_id]
    assert failed.status == "failed" and failed.test_acc is None
    assert "RuntimeError: boom in the engine" in failed.error and "Traceback" in failed.error
    assert [recorder.results[c.run_id].status for c in runs if c != runs[1]] == ["done"] * 3
    # Sequential: each run is dispatched, then reported, in the given order.
    assert recorder.events == [(k, c.run_id) for c in runs for k in ("dispatch", "result")]


def test_train_pinned_sets_and_restores_torch_threads(monkeypatch):
    seen = []
    monkeypatch.setattr(
        executors, "train_safely", lambda unit, execution: seen.append(torch.get_num_threads())
    )
    torch.set_num_threads(1)
    train_pinned(configs(1), 2)
    assert seen == [2] and torch.get_num_threads() == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"executor": "slurm"}, "--executor 'slurm'"),
        ({"workers": 0}, "--workers must be >= 1"),
        ({"threads": -1}, "--threads must be >= 1"),
    ],
)
def test_bad_execution_options_are_refused(kwargs, message):
    options = {"executor": "local", "workers": 1, "threads": 1, **kwargs}
    with pytest.raises(NormlabError, match=message):
        execute(options.pop("executor"), configs(1), lambda config, result: None, **options)


def metrics(result: RunResult) -> dict:
    """Everything a run measured except timings."""
    return {k: v for k, v in result.to_dict().items() if k not in ("wall_time", "images_per_sec")}


def test_two_spawned_workers_match_sequential_runs_exactly():
    # Equal threads per run (1) in both paths: see the executors docstring on reduction order.
    runs = configs(6)
    sequential, parallel = Recorder(), Recorder()
    run_local(runs, 1, sequential.on_result, threads=1, on_dispatch=sequential.on_dispatch)
    run_local(runs, 2, parallel.on_result, threads=1, on_dispatch=parallel.on_dispatch)
    assert {k: metrics(r) for k, r in parallel.results.items()} == {
        k: metrics(r) for k, r in sequential.results.items()
    }
    assert all(r.status == "done" for r in parallel.results.values())
    assert parallel.max_in_flight() == 2  # a run is dispatched when a worker is free
    assert sorted(parallel.events) == sorted(sequential.events)


def test_a_worker_killed_mid_run_fails_its_runs_and_a_fresh_pool_trains_the_rest():
    # The long runs would train for hours: they can only end by their worker being killed.
    long_runs = [config.replace(epochs=1, steps=10**8) for config in configs(2)]
    short_runs = configs(4)
    recorder = Recorder()
    killer = WorkerKiller()
    killer.start()
    run_local(
        long_runs + short_runs, 2, recorder.on_result, threads=1, on_dispatch=recorder.on_dispatch
    )
    killer.join()
    assert killer.killed_one_worker, "no pool worker was seen training within 60 s"
    for config in long_runs:
        result = recorder.results[config.run_id]
        assert result.status == "failed" and "worker process died" in result.error
    assert [recorder.results[c.run_id].status for c in short_runs] == ["done"] * 4


class WorkerKiller(threading.Thread):
    """SIGKILLs one pool worker once both have started; if none shows up within 60 s it kills
    every child instead, so the test fails on ``killed_one_worker`` rather than hanging."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.killed_one_worker = False

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = [w for w in multiprocessing.active_children() if ignores_sigint(w.pid)]
            if len(workers) >= 2:
                time.sleep(0.5)  # both long runs are in their (endless) training loops
                os.kill(workers[0].pid, signal.SIGKILL)
                self.killed_one_worker = True
                return
            time.sleep(0.05)
        for child in multiprocessing.active_children():
            child.kill()


def ignores_sigint(pid: int) -> bool:
    """A pool worker whose initializer has run (it sets SIGINT to be ignored)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    (mask,) = [line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")]
    return bool(int(mask, 16) & (1 << (signal.SIGINT - 1)))
