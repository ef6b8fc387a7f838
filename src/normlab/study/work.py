"""What every executor shares: units of work, the run's dataset, failed results, thread counts.

The layer under the executors (:mod:`.ray_executor`, then :mod:`.executors`, which holds the
local pool and dispatches to either); it imports neither. The engine interface is
``train_runs(unit, dataset)`` from :mod:`normlab.train`, handed the units of :func:`work_units`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cloudpickle

from normlab.data import Dataset, load_dataset
from normlab.errors import NormlabError
from normlab.models import MODELS
from normlab.train import RunConfig, RunResult

ResultCallback = Callable[[RunConfig, RunResult], None]
"""Called in the driver as each run's result arrives."""
DispatchCallback = Callable[[RunConfig], None]
"""Called in the driver as each run is handed to a worker."""


@dataclass(frozen=True)
class Execution:
    """How a study's runs train, beyond their configs: never part of a run's identity. The
    driver builds one and every worker receives it with each unit."""

    pack: str = "auto"
    """Packed training of compatible runs: ``auto`` or ``off``."""
    device: str = "auto"
    """Where runs train: ``cpu``, ``cuda`` or ``auto``."""
    weights_dir: str | None = None
    """Folder where each run's final weights are kept (``run_id.pt``); None: not kept."""
    diagnostics: tuple[str, ...] = ()
    """Per-run diagnostics recorded after training (kinds of ``RunResult.diagnostics``)."""


UnitTrainer = Callable[[Sequence[RunConfig], int, Execution], list[RunResult]]
"""Trains one unit of runs with torch pinned to a thread count, one result per run, never raising
(:func:`normlab.study.executors.train_pinned`): what a worker or a Ray task executes."""


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // workers)


LOADED_DATASETS_KEPT = 4
"""Datasets a process keeps loaded (a study uses one; a store with several studies a few)."""

_loaded: dict[tuple[str, str], Dataset] = {}


def _dataset_key(config: RunConfig) -> tuple[str, str]:
    return (config.dataset, json.dumps(config.dataset_options, sort_keys=True))


def dataset_for(config: RunConfig) -> Dataset:
    """The run's dataset, loaded once per process (or received from the driver, see
    :func:`worker_payload`)."""
    key = _dataset_key(config)
    if key not in _loaded:
        if len(_loaded) >= LOADED_DATASETS_KEPT:
            del _loaded[next(iter(_loaded))]
        _loaded[key] = load_dataset(config.dataset, **config.dataset_options)
    return _loaded[key]


def worker_payload(configs: Sequence[RunConfig]) -> bytes:
    """What a worker process needs from the driver to train ``configs``, serialized.

    A worker is a fresh process (spawned locally, or a Ray worker): it sees the registries as
    normlab defines them, not what a notebook or script added to them. So the driver sends (1) the
    datasets of ``configs`` it has already loaded (every study loads its dataset while planning),
    which also spares each worker decoding the files again, and (2) the models registered from
    Python (entries of ``normlab.models.MODELS`` whose builder is not normlab's own). cloudpickle
    serializes functions defined in ``__main__`` or a notebook by value.
    """
    datasets = {key: _loaded[key] for key in {_dataset_key(c) for c in configs} if key in _loaded}
    models = {
        name: entry
        for name, entry in MODELS.items()
        if not getattr(entry.build, "__module__", "").startswith("normlab.")
    }
    try:
        return cloudpickle.dumps((datasets, models))
    except Exception as error:  # whatever the user's objects raise when pickled
        raise NormlabError(
            f"cannot send the models registered from Python ({', '.join(models) or 'none'}) to "
            f"worker processes ({error}); define the factory in a module or file and pass it as "
            "'pkg.module:factory' or 'file.py:factory', or use --workers 1"
        ) from None


def install_payload(payload: bytes) -> None:
    """In a worker: make the driver's datasets and Python-registered models available."""
    digest = hashlib.sha256(payload).hexdigest()
    if digest in _installed:
        return
    datasets, models = pickle.loads(payload)
    _loaded.update(datasets)
    MODELS.update(models)
    _installed.add(digest)


_installed: set[str] = set()


def failed_result(config: RunConfig, error: str) -> RunResult:
    """The result of a run that raised or whose worker died: status ``failed`` with ``error``."""
    return RunResult(run_id=config.run_id, status="failed", error=error)


def work_units(configs: Sequence[RunConfig]) -> list[list[RunConfig]]:
    """Split ``configs`` into units of work: the runs one worker trains in one engine call.

    One run per unit today. A packed engine (K compatible runs as one grouped model) only has to
    group compatible configs here; executors already hand the engine lists.
    """
    return [[config] for config in configs]
