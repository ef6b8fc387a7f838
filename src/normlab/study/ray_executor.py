"""The ``ray`` executor: each run is a Ray task on an existing cluster; results come back to the
driver, which alone writes the store.

The cluster is found at ``address``, else ``$RAY_ADDRESS``, else ``"auto"`` (the cluster that
``ray start`` last started on this machine). normlab never starts a cluster itself: a local one
would bind the machine's primary interface. Each task reserves ``num_cpus = threads`` and pins
torch to that many threads, so results equal a local run with the same ``threads`` (see
:mod:`normlab.study.executors`). At most ``workers`` tasks are in flight (default: the cluster's
CPUs // threads), so ``running`` in the store means handed to the cluster. normlab must be
importable on every node (installed there, or shipped with a Ray ``runtime_env``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from normlab.errors import NormlabError
from normlab.train import RunConfig, RunResult

from .work import (
    DispatchCallback,
    Execution,
    ResultCallback,
    UnitTrainer,
    failed_result,
    install_payload,
    work_units,
)


def resolve_address(address: str | None) -> str:
    """``--address``, else ``$RAY_ADDRESS``, else ``"auto"``."""
    return address or os.environ.get("RAY_ADDRESS") or "auto"


def run_ray(
    configs: Sequence[RunConfig],
    on_result: ResultCallback,
    *,
    train: UnitTrainer,
    execution: Execution,
    payload: bytes,
    workers: int | None,
    threads: int,
    address: str | None,
    on_dispatch: DispatchCallback,
) -> None:
    """Train ``configs`` as Ray tasks on the cluster at ``address``, each task ``train(unit,
    threads)`` (the executors hand :func:`normlab.study.executors.train_pinned`) in a worker that
    has installed the driver's ``payload`` (:func:`~.work.worker_payload`), put in the object
    store once."""
    try:
        import ray
    except ImportError:
        raise NormlabError(
            "--executor ray needs Ray on the driver and the cluster: pip install 'normlab[ray]'"
        ) from None
    address = resolve_address(address)
    connected_here = not ray.is_initialized()
    if connected_here:
        try:
            # log_to_driver=False: worker output would interleave with the result table on stdout;
            # a run's traceback comes back in its result.
            ray.init(address=address, log_to_driver=False, logging_level="warning")
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise NormlabError(
                f"--address {address}: no Ray cluster reachable ({error}); start one with "
                "'ray start --head' or pass the head's --address"
            ) from None
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        task = ray.remote(_train_with_payload).options(num_cpus=threads, max_retries=0)
        payload_ref = ray.put(payload)
        queue = list(reversed(work_units(configs, execution.pack)))
        in_flight: dict[ray.ObjectRef, list[RunConfig]] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < workers:
                    unit = queue.pop()
                    for config in unit:
                        on_dispatch(config)
                    in_flight[task.remote(train, payload_ref, unit, threads, execution)] = unit
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    unit = in_flight.pop(ref)
                    try:
                        results = ray.get(ref)
                    except ray.exceptions.RayError as error:  # worker died, node lost, ...
                        results = [failed_result(c, f"Ray task failed: {error}") for c in unit]
                    for config, result in zip(unit, results, strict=True):
                        on_result(config, result)
        except BaseException:
            # Ctrl-C or a driver error: stop the cluster's work on our runs (retried on resume).
            for ref in in_flight:
                ray.cancel(ref, force=True)
            raise
    finally:
        if connected_here:
            ray.shutdown()  # disconnects this driver; the cluster keeps running


def _train_with_payload(
    train: UnitTrainer,
    payload: bytes,
    unit: Sequence[RunConfig],
    threads: int,
    execution: Execution,
) -> list[RunResult]:
    install_payload(payload)  # once per Ray worker process (by content hash)
    return train(unit, threads, execution)
