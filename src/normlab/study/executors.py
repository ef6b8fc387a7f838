"""Executors: where a study's runs train. The driver alone writes the store.

:func:`execute` hands run configs to an executor; it calls ``on_dispatch`` in the driver as each
run is handed to a worker and ``on_result`` as each result arrives. A run that raises comes back
as a ``failed`` result carrying its traceback; the study goes on.

- ``local``, one worker: trains in this process.
- ``local``, N workers: a pool of N spawned processes, at most N runs in flight. Workers ignore
  SIGINT: on Ctrl-C the driver terminates them at once (their runs go back to ``pending``), keeps
  every finished run, and re-raises ``KeyboardInterrupt``. A worker also exits when the driver
  dies, so a killed driver leaves no orphans behind.
- ``ray``: Ray tasks on an existing cluster (:mod:`normlab.study.ray_executor`), each running
  :func:`train_pinned`.

The pieces both executors share (units of work, the run's dataset, failed results, callback
types, thread counts) live in :mod:`normlab.study.work` and are re-exported here.

Threads and determinism: every run pins torch to ``threads`` intra-op threads (default 1,
``work.DEFAULT_THREADS``, locally and per Ray task; the store records it per run). The same config
with the same thread count gives bit-identical metrics whether it runs in the driver, in a pool
worker or in a Ray task. A different thread count changes the order of floating-point reductions,
and training can amplify that: on digits (widths 8/16/16, batch 64, 2 epochs) 1 vs 2 threads gave
a final train loss of 0.8713625520467758 vs 0.871357686817646 with equal accuracies, but a
synthetic gn run (1,000 examples, widths 4/4/4, batch 4, seed 0, 1 epoch) reached test accuracy
0.485 with 1 thread and 0.575 with 2, each reproducible. So sequential and parallel runs agree
exactly at equal ``threads`` per run, and only then: fix ``--threads`` when comparing executors.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import traceback
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import torch

from normlab.errors import NormlabError
from normlab.train import RunConfig, RunResult, train_runs
from normlab.train.allocator import keep_freed_memory
from normlab.train.device import fix_numerics, resolve_device, tf32_allowed

from .diagnose import PRECISE_MAX_EXAMPLES, after_training_for
from .ray_executor import run_ray
from .work import (
    PACK_MODES,
    DispatchCallback,
    Execution,
    ResultCallback,
    dataset_for,
    failed_result,
    install_payload,
    threads_per_worker,
    work_units,
    worker_payload,
)

EXECUTORS = ("local", "ray")
DEFAULT_EXECUTION = Execution(pack="off")
"""What the executor functions assume when given no ``execution``: one run per unit (``run_study``
and the CLI pack by default and always pass one)."""
LIVENESS_CHECK_SECONDS = 1.0
"""How often the driver checks that no pool worker died while every run in flight is long."""


def train_safely(
    unit: Sequence[RunConfig], execution: Execution = DEFAULT_EXECUTION
) -> list[RunResult]:
    """Train one unit of runs; an exception fails the unit's runs with its traceback. A pack
    that raises is retrained run by run, so that one faulty run fails alone."""
    try:
        return train_runs(unit, dataset_for(unit[0]), **engine_options(execution))
    except Exception:  # a failing run is a result; the study goes on
        if len(unit) > 1:
            return [train_safely([config], execution)[0] for config in unit]
        error = traceback.format_exc()
        return [failed_result(config, error) for config in unit]


def engine_options(execution: Execution) -> dict[str, Any]:
    """What ``execution`` asks of the engine beyond the configs: the device, the diagnostics
    callback (:mod:`.diagnose`), the folder for each run's final weights, and the PreciseBN pass
    a pack makes for all its runs when ``gap`` is recorded."""
    weights_dir = None
    if execution.weights_dir is not None:
        weights_dir = Path(execution.weights_dir)
        weights_dir.mkdir(parents=True, exist_ok=True)
    return {
        "after_training": after_training_for(execution.diagnostics),
        "weights_dir": weights_dir,
        "device": resolve_device(execution.device),
        "precise_examples": PRECISE_MAX_EXAMPLES if "gap" in execution.diagnostics else None,
    }


def train_pinned(
    unit: Sequence[RunConfig], threads: int, execution: Execution = DEFAULT_EXECUTION
) -> list[RunResult]:
    """:func:`train_safely` with torch pinned to ``threads`` (what every worker executes), and
    on a GPU the numerics settings fixed (``device.fix_numerics``: TF32 off unless
    ``NORMLAB_TF32=1``, deterministic cuDNN)."""
    keep_freed_memory()
    if execution.device in ("auto", "cuda") and torch.cuda.is_available():
        fix_numerics()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return train_safely(unit, execution)
    finally:
        torch.set_num_threads(previous)


def execute(
    executor: str,
    configs: Sequence[RunConfig],
    on_result: ResultCallback,
    *,
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    on_dispatch: DispatchCallback | None = None,
    execution: Execution = DEFAULT_EXECUTION,
) -> None:
    """Train ``configs`` with ``executor`` (see the module docstring for each one's options);
    ``execution`` reaches every worker with each unit."""
    check_options(executor, workers, threads)
    check_execution(executor, execution)
    if not configs:
        return  # nothing to train: do not start a pool or connect to a cluster
    threads = threads or default_threads(executor, workers)
    if executor == "local":
        workers = workers or os.cpu_count() or 1
        run_local(
            configs,
            workers,
            on_result,
            threads=threads,
            on_dispatch=on_dispatch,
            execution=execution,
        )
    else:
        run_ray(
            configs,
            on_result,
            train=train_pinned,
            execution=execution,
            payload=worker_payload(configs),
            workers=workers,
            threads=threads,
            address=address,
            on_dispatch=on_dispatch or (lambda config: None),
        )


def check_options(executor: str, workers: int | None, threads: int | None) -> None:
    """Refuse an unknown executor or a non-positive worker / thread count."""
    if executor not in EXECUTORS:
        raise NormlabError(f"--executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise NormlabError(f"--workers must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise NormlabError(f"--threads must be >= 1, got {threads}")


def check_execution(executor: str, execution: Execution) -> None:
    """Refuse an unknown ``--pack`` or ``--device``, and ``--device cuda`` for local workers on
    a machine without CUDA (a Ray cluster's nodes are checked by its tasks)."""
    if execution.pack not in PACK_MODES:
        raise NormlabError(f"--pack {execution.pack!r}; valid: {', '.join(PACK_MODES)}")
    if executor == "local" or execution.device not in ("auto", "cuda"):
        resolve_device(execution.device)
    tf32_allowed()  # a bad NORMLAB_TF32 is one error here, not a failure in every worker


def default_threads(executor: str, workers: int | None) -> int:
    """Threads per run when ``--threads`` is not given."""
    if executor == "ray":
        return 1
    return threads_per_worker(workers or os.cpu_count() or 1)


def run_local(
    configs: Sequence[RunConfig],
    workers: int,
    on_result: ResultCallback,
    *,
    threads: int | None = None,
    on_dispatch: DispatchCallback | None = None,
    execution: Execution = DEFAULT_EXECUTION,
) -> None:
    """Train ``configs`` here (``workers == 1``) or in ``workers`` spawned processes."""
    check_options("local", workers, threads)
    threads = threads or threads_per_worker(workers)
    on_dispatch = on_dispatch or (lambda config: None)
    units = work_units(configs, execution.pack, dict(execution.pack_sizes))
    if workers == 1 or len(units) <= 1:
        for unit in units:
            for config in unit:
                on_dispatch(config)
            for config, result in zip(unit, train_pinned(unit, threads, execution), strict=True):
                on_result(config, result)
        return
    queue = list(reversed(units))
    payload = worker_payload(configs)
    while queue:
        # A fresh pool only after a worker died (BrokenProcessPool): its runs failed, the rest go on.
        _run_pool(
            queue, min(workers, len(queue)), threads, on_result, on_dispatch, payload, execution
        )


def _run_pool(
    queue: list[list[RunConfig]],
    workers: int,
    threads: int,
    on_result: ResultCallback,
    on_dispatch: DispatchCallback,
    payload: bytes,
    execution: Execution,
) -> None:
    """Drain ``queue`` of work units (last first) through one pool of ``workers`` processes,
    each started with the driver's ``payload`` (:func:`~.work.worker_payload`)."""
    # spawn, not fork: a forked child inherits the parent's OpenMP state and can deadlock.
    context = multiprocessing.get_context("spawn")
    pool = futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(payload,)
    )
    in_flight: dict[futures.Future[list[RunResult]], list[RunConfig]] = {}
    try:
        while queue or in_flight:
            while queue and len(in_flight) < workers:
                unit = queue.pop()
                for config in unit:
                    on_dispatch(config)
                in_flight[pool.submit(train_pinned, unit, threads, execution)] = unit
            done, _ = futures.wait(
                in_flight, timeout=LIVENESS_CHECK_SECONDS, return_when=futures.FIRST_COMPLETED
            )
            dead = [] if done else _dead_workers(pool)
            if dead:
                # CPython's pool can miss a worker's death: submit() wakes its manager thread
                # before spawning the new worker, so the manager may watch a stale sentinel list
                # until some other result arrives, which never happens if the others run long.
                for unit in in_flight.values():
                    for config in unit:
                        on_result(config, failed_result(config, f"worker process died ({dead[0]})"))
                in_flight.clear()
                _terminate(pool)
                return
            broken = False
            for future in done:
                unit = in_flight.pop(future)
                error = future.exception()
                if isinstance(error, BrokenProcessPool):
                    broken = True
                    for config in unit:
                        on_result(config, failed_result(config, f"worker process died ({error})"))
                else:
                    for config, result in zip(unit, future.result(), strict=True):
                        on_result(config, result)
            if broken:
                # Which run killed its worker is unknown: every run in flight failed with it.
                for unit in in_flight.values():
                    for config in unit:
                        on_result(
                            config, failed_result(config, "worker process died (pool broken)")
                        )
                in_flight.clear()
                return
    except BaseException:
        # Ctrl-C or an error in the driver: stop the workers now, not after their runs finish.
        _terminate(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _dead_workers(pool: futures.ProcessPoolExecutor) -> list[str]:
    """Descriptions of pool workers that have exited (e.g. killed by the OOM killer)."""
    return [
        f"pid {process.pid}, exit code {process.exitcode}"
        for process in list((pool._processes or {}).values())
        if process.exitcode is not None
    ]


def _terminate(pool: futures.ProcessPoolExecutor) -> None:
    terminate_workers = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate_workers is not None:
        terminate_workers()
        return
    for process in list((pool._processes or {}).values()):
        process.terminate()
    for process in list((pool._processes or {}).values()):
        process.join(timeout=5)


def _init_worker(payload: bytes) -> None:
    install_payload(payload)
    # The driver handles Ctrl-C (the terminal sends SIGINT to the whole process group) and
    # terminates its workers; a worker interrupted mid-run would only report a spurious failure.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_driver, args=(parent.sentinel,), daemon=True).start()


def _exit_with_driver(sentinel: int) -> None:
    # A SIGKILLed driver cannot terminate its pool; without this its workers would finish their
    # runs for nobody and then wait on the task queue forever.
    multiprocessing.connection.wait([sentinel])
    os._exit(1)
