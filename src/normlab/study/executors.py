"""Executors: where a study's runs train. The driver alone writes the store.

An executor takes a list of run configs and calls ``on_result`` in the driver process as each
result arrives. ``local`` trains in this process (one worker) or in a pool of spawned worker
processes, each pinned to ``cpu_count // workers`` torch threads so workers never oversubscribe
the cores.
"""

from __future__ import annotations

import concurrent.futures as futures
import functools
import json
import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence

import torch

from normlab.data import Dataset, load_dataset
from normlab.errors import NormlabError
from normlab.train import RunConfig, RunResult, train_run

EXECUTORS = ("local",)

ResultCallback = Callable[[RunConfig, RunResult], None]


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // workers)


@functools.lru_cache(maxsize=4)
def _cached_dataset(name: str, options_json: str) -> Dataset:
    return load_dataset(name, **json.loads(options_json))


def dataset_for(config: RunConfig) -> Dataset:
    """The run's dataset, loaded once per process."""
    return _cached_dataset(config.dataset, json.dumps(config.dataset_options, sort_keys=True))


def train_safely(config: RunConfig) -> RunResult:
    """Train one run; an exception becomes a ``failed`` result with its traceback."""
    try:
        return train_run(config, dataset_for(config))
    except Exception:  # a failing run is a result; the study goes on
        return RunResult(run_id=config.run_id, status="failed", error=traceback.format_exc())


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_local(configs: Sequence[RunConfig], workers: int, on_result: ResultCallback) -> None:
    """Train ``configs`` here (``workers == 1``) or in ``workers`` spawned processes."""
    if workers < 1:
        raise NormlabError(f"--workers must be >= 1, got {workers}")
    threads = threads_per_worker(workers)
    if workers == 1 or len(configs) <= 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for config in configs:
                on_result(config, train_safely(config))
        finally:
            torch.set_num_threads(previous)
        return
    # spawn, not fork: a forked child inherits the parent's OpenMP state and can deadlock.
    context = multiprocessing.get_context("spawn")
    pool = futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(threads,)
    )
    try:
        pending = {pool.submit(train_safely, config): config for config in configs}
        for future in futures.as_completed(pending):
            on_result(pending[future], future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
