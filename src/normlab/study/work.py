"""What every executor shares: units of work, the run's dataset, failed results, thread counts.

The layer under the executors (:mod:`.ray_executor`, then :mod:`.executors`, which holds the
local pool and dispatches to either); it imports neither. The engine interface is
``train_runs(unit, dataset)`` from :mod:`normlab.train`, handed the units of :func:`work_units`.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence

from normlab.data import Dataset, load_dataset
from normlab.train import RunConfig, RunResult

ResultCallback = Callable[[RunConfig, RunResult], None]
"""Called in the driver as each run's result arrives."""
DispatchCallback = Callable[[RunConfig], None]
"""Called in the driver as each run is handed to a worker."""
UnitTrainer = Callable[[Sequence[RunConfig], int], list[RunResult]]
"""Trains one unit of runs with torch pinned to a thread count, one result per run, never raising
(:func:`normlab.study.executors.train_pinned`): what a worker or a Ray task executes."""


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // workers)


@functools.lru_cache(maxsize=4)
def _cached_dataset(name: str, options_json: str) -> Dataset:
    return load_dataset(name, **json.loads(options_json))


def dataset_for(config: RunConfig) -> Dataset:
    """The run's dataset, loaded once per process."""
    return _cached_dataset(config.dataset, json.dumps(config.dataset_options, sort_keys=True))


def failed_result(config: RunConfig, error: str) -> RunResult:
    """The result of a run that raised or whose worker died: status ``failed`` with ``error``."""
    return RunResult(run_id=config.run_id, status="failed", error=error)


def work_units(configs: Sequence[RunConfig]) -> list[list[RunConfig]]:
    """Split ``configs`` into units of work: the runs one worker trains in one engine call.

    One run per unit today. A packed engine (K compatible runs as one grouped model) only has to
    group compatible configs here; executors already hand the engine lists.
    """
    return [[config] for config in configs]
