"""What every executor shares: units of work, the run's dataset, failed results, thread counts.

The layer under the executors (:mod:`.ray_executor`, then :mod:`.executors`, which holds the
local pool and dispatches to either); it imports neither. The engine interface is
``train_runs(unit, dataset)`` from :mod:`normlab.train`, handed the units of :func:`work_units`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cloudpickle

from normlab.data import Dataset, load_dataset
from normlab.errors import NormlabError
from normlab.models import MODELS
from normlab.train import RunConfig, RunResult
from normlab.train.packed import pack_key

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
MAX_PACK_SIZE = 64
"""No pack holds more runs (beyond 64 the measured images/s at batch 2 stops growing)."""
PACK_PIXEL_BUDGET = 16_384
"""Pack size bound: K * batch_size * H * W <= this, i.e. a packed step processes at most as many
image pixels as 256 digits images (8x8) or 16 CIFAR images (32x32): a pack's activations grow
with K x batch x pixels, and the bound keeps a packed step within the memory and cache footprint
of an ordinary batch-256 digits step."""
PACKED_STEP_PIXELS = 2_048
"""Runs pack only where batch_size * H * W <= this (batch 32 on digits, 2 on 32x32 images).
Measured on 2 cores (``normlab bench``, ``docs/BENCHMARKS.md``): packing pays most where a step
is overhead (7x to 11x at batch 2, about 4x at batch 8 with K = 15 on digits), less as the step
becomes arithmetic, which packing does not reduce (1.6x to 2x at batch 32), and it loses at
batch 128 (0.5x: the grouped convolutions are slower than K ordinary ones)."""


def pack_size_limit(batch_size: int, image_pixels: int) -> int:
    """The most runs a pack of ``batch_size`` holds for images of ``image_pixels`` (H * W);
    1 (no packing) where one run's step is large enough to use the machine alone."""
    pixels = batch_size * max(1, image_pixels)
    if pixels > PACKED_STEP_PIXELS:
        return 1
    return max(1, min(MAX_PACK_SIZE, PACK_PIXEL_BUDGET // pixels))


def work_units(configs: Sequence[RunConfig], pack: str = "auto") -> list[list[RunConfig]]:
    """Split ``configs`` into units of work: the runs one worker trains in one engine call.

    ``pack="off"``: one run per unit. ``auto``: runs with equal ``pack_key`` (a study cell: they
    differ only in seed, learning rate and the other per-run fields) are split into the fewest
    packs of at most :func:`pack_size_limit` runs, of near-equal sizes; a run that cannot pack is
    a unit alone. Units keep the order of their first run in ``configs`` (the runner's longest
    first order).
    """
    if pack not in PACK_MODES:
        raise NormlabError(f"--pack {pack!r}; valid: {', '.join(PACK_MODES)}")
    if pack == "off":
        return [[config] for config in configs]
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
            units.append(groups[key])  # filled in place; split below
    split: list[list[RunConfig]] = []
    for unit in units:
        if len(unit) == 1:
            split.append(unit)
            continue
        height, width = dataset_for(unit[0]).input_shape[1:]
        limit = pack_size_limit(unit[0].batch_size, height * width)
        packs = -(-len(unit) // limit)
        size, extra = divmod(len(unit), packs)
        start = 0
        for index in range(packs):
            stop = start + size + (1 if index < extra else 0)
            split.append(unit[start:stop])
            start = stop
    return split
