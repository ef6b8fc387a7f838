"""What every executor shares: units of work, the run's dataset, failed results, thread counts.

The layer under the executors (:mod:`.ray_executor`, then :mod:`.executors`, which holds the
local pool and dispatches to either); it imports neither. The engine interface is
``train_runs(unit, dataset)`` from :mod:`normlab.train`, handed the units of :func:`work_units`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import cloudpickle

from normlab.data import Dataset, load_dataset
from normlab.errors import NormlabError
from normlab.models import MODELS
from normlab.train import RunConfig, RunResult
from normlab.train.packed import pack_key

# The fixed rule's names stay importable from here, where executors' callers found them.
from .packrule import MAX_PACK_SIZE as MAX_PACK_SIZE
from .packrule import fallback_choice, rule_key
from .packrule import pack_size_limit as pack_size_limit

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
    pack_sizes: tuple[tuple[str, int], ...] = ()
    """(rule key, pack size) the study decided (``packrule.py``): measured when it was planned,
    or recorded by its first leg; a configuration not listed gets the fixed rule."""


UnitTrainer = Callable[[Sequence[RunConfig], int, Execution], list[RunResult]]
"""Trains one unit of runs with torch pinned to a thread count, one result per run, never raising
(:func:`normlab.study.executors.train_pinned`): what a worker or a Ray task executes."""


DEFAULT_THREADS = 1
"""Torch threads per worker process when ``--threads`` is not given, whatever ``--workers``.

Parallelism comes from processes (``--workers``, one per core by default), not from torch's
OpenMP threads: an OpenMP team waits at a barrier after every parallel region, so when another
process takes one of the cores each step waits for a descheduled thread. Measured for
``normlab run --quick --workers 1`` (``docs/BENCHMARKS.md``): 2 threads were 10% faster than 1
on a quiet machine (42 s vs 47 s) but 3.7 times slower beside one busy process (168 s vs 46 s);
one thread per process slows down in proportion to the cores taken."""


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes sharing this machine's cores: always
    :data:`DEFAULT_THREADS` (``workers`` is kept for callers that pass it)."""
    return DEFAULT_THREADS


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


PACK_MODES = ("auto", "off")
"""``--pack``: ``auto`` trains compatible runs as packs (``normlab.train.packed``), ``off`` one
by one."""


def work_units(
    configs: Sequence[RunConfig],
    pack: str = "auto",
    pack_sizes: Mapping[str, int] | None = None,
) -> list[list[RunConfig]]:
    """Split ``configs`` into units of work: the runs one worker trains in one engine call.

    ``pack="off"``: one run per unit. ``auto``: runs with equal ``pack_key`` (a study cell: they
    differ only in seed, learning rate and the other per-run fields) are split into the fewest
    packs of at most the configuration's pack size, of near-equal sizes: ``pack_sizes[key]`` for
    its :func:`~.packrule.rule_key` (the measured rule), else the fixed rule
    (:func:`~.packrule.fallback_choice`). A run that cannot pack is a unit alone. Units keep the
    order of their first run in ``configs`` (the runner's longest first order).
    """
    if pack not in PACK_MODES:
        raise NormlabError(f"--pack {pack!r}; valid: {', '.join(PACK_MODES)}")
    if pack == "off":
        return [[config] for config in configs]
    split: list[list[RunConfig]] = []
    for unit in pack_groups(configs):
        limit = pack_size_of(unit[0], pack_sizes) if len(unit) > 1 else 1
        packs = -(-len(unit) // limit)
        size, extra = divmod(len(unit), packs)
        start = 0
        for index in range(packs):
            stop = start + size + (1 if index < extra else 0)
            split.append(unit[start:stop])
            start = stop
    return split


def pack_groups(configs: Sequence[RunConfig]) -> list[list[RunConfig]]:
    """``configs`` grouped by ``pack_key`` (every run that could share a pack with the first of
    its group), in the order of each group's first run; a run that cannot pack is a group alone."""
    groups: dict[str, list[RunConfig]] = {}
    units: list[list[RunConfig]] = []
    for config in configs:
        key = pack_key(config)
        if key is None:
            units.append([config])
        elif key in groups:
            groups[key].append(config)
        else:
            groups[key] = [config]
            units.append(groups[key])
    return units


def image_shape(config: RunConfig) -> tuple[int, ...]:
    """The (C, H, W) of ``config``'s dataset."""
    return tuple(dataset_for(config).input_shape)


def pack_size_of(config: RunConfig, pack_sizes: Mapping[str, int] | None = None) -> int:
    """Runs per pack for ``config``'s configuration: the decided size, else the fixed rule."""
    shape = image_shape(config)
    key = rule_key(config, shape)
    if pack_sizes and key in pack_sizes:
        return max(1, int(pack_sizes[key]))
    return fallback_choice(config, shape[-1] * shape[-2]).size
