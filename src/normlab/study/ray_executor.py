"""The ``ray`` executor: each run is a Ray task on an existing cluster; results come back to the
driver, which alone writes the store.

The cluster is found at ``address``, else ``$RAY_ADDRESS``, else ``"auto"`` (the cluster that
``ray start`` last started on this machine). normlab never starts a cluster itself: a local one
would bind the machine's primary interface. Each task reserves ``num_cpus = threads`` and pins
torch to that many threads, so results equal a local run with the same ``threads`` (see
:mod:`normlab.study.executors`). At most ``workers`` tasks are in flight (default: the cluster's
CPUs // threads), so ``running`` in the store means handed to the cluster. normlab must be
importable on every node (installed there, or shipped with a Ray ``runtime_env``).

Failing fast: before the output folder is touched, :func:`check_ray_reachable` opens a TCP
connection to the head (at most :data:`CONNECT_SECONDS`); ``ray.init`` alone retries an address
where nothing listens for minutes. During a study, while no result arrives, the driver checks
every :data:`HEAD_CHECK_SECONDS` that the head still answers; when it went away the study stops
with one line (:class:`HeadGone`) and the runs in flight go back to ``pending`` for the next
invocation (Ray itself would end the driver process after 60 s, with a log line).
"""

from __future__ import annotations

import os
import socket
import time
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

CONNECT_SECONDS = 10.0
"""How long the driver waits for a Ray head's port to accept a connection before refusing: a
head that is up answers in milliseconds; 10 s leaves room for a loaded machine or a slow
network, well under the 30 s a user should wait to learn that nothing listens."""


HEAD_CHECK_SECONDS = 5.0
"""While no result arrives, how often the driver checks that the head still answers (and how long
it waits for it): a head that went away stops the study in seconds, not at Ray's own timeout."""


def resolve_address(address: str | None) -> str:
    """``--address``, else ``$RAY_ADDRESS``, else ``"auto"``."""
    return address or os.environ.get("RAY_ADDRESS") or "auto"


def check_ray_reachable(address: str | None, seconds: float = CONNECT_SECONDS) -> None:
    """Refuse, in at most about ``seconds``, an address where no Ray head answers, or ``auto``
    with no cluster to join; called before the output folder or the store is touched.

    The check opens a TCP connection to the head's GCS port (nothing is sent): ``ray.init``
    against an address where nothing listens retries for minutes. A port that answers but is not
    a Ray head is left to ``ray.init``."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise NormlabError(
            "--executor ray needs Ray on the driver and the cluster: pip install 'normlab[ray]'"
        ) from None
    given = resolve_address(address)
    target = given.removeprefix("ray://")
    if target == "auto":
        target = _started_here()
    host, colon, port = target.rpartition(":")
    if not colon or not port.isdigit():
        raise NormlabError(f"--address {given}: not a Ray head address HOST:PORT")
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        try:
            with socket.create_connection(
                (host.strip("[]"), int(port)), timeout=max(remaining, 0.1)
            ):
                return
        except OSError as error:
            reason = error.strerror or type(error).__name__
            if time.monotonic() + 0.5 >= deadline:
                raise NormlabError(
                    f"--address {given}: no Ray head answered within {seconds:.0f} s ({reason}); "
                    "start one with 'ray start --head' or pass the head's --address"
                ) from None
            time.sleep(0.5)  # a head that is starting opens its port within seconds


def _started_here() -> str:
    """The address of the cluster ``ray start`` last started on this machine."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        found = canonicalize_bootstrap_address("auto")
    except Exception:  # ConnectionError when none; the private API may also change
        found = None
    if not found:
        raise NormlabError(
            "--executor ray: no Ray cluster to join (no --address, no $RAY_ADDRESS, and no "
            "cluster started here by 'ray start --head')"
        )
    return found


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
        gcs = ray.get_runtime_context().gcs_address
        task = ray.remote(_train_with_payload).options(num_cpus=threads, max_retries=0)
        payload_ref = ray.put(payload)
        queue = list(reversed(work_units(configs, execution.pack, dict(execution.pack_sizes))))
        in_flight: dict[ray.ObjectRef, list[RunConfig]] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < workers:
                    unit = queue.pop()
                    for config in unit:
                        on_dispatch(config)
                    in_flight[task.remote(train, payload_ref, unit, threads, execution)] = unit
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=HEAD_CHECK_SECONDS)
                if not done:
                    _check_head(gcs, address)  # nothing finished for a while: is the head there?
                for ref in done:
                    unit = in_flight.pop(ref)
                    try:
                        results = ray.get(ref)
                    except ray.exceptions.RayError as error:  # worker died, node lost, ...
                        results = [failed_result(c, f"Ray task failed: {error}") for c in unit]
                    for config, result in zip(unit, results, strict=True):
                        on_result(config, result)
        except HeadGone:
            raise  # nothing to cancel on a cluster that is gone; the runs retry on resume
        except BaseException:
            # Ctrl-C or a driver error: stop the cluster's work on our runs (retried on resume).
            for ref in in_flight:
                ray.cancel(ref, force=True)
            raise
    finally:
        if connected_here:
            ray.shutdown()  # disconnects this driver; the cluster keeps running


class HeadGone(NormlabError):
    """The Ray head stopped answering during a study."""


def _check_head(gcs: str, address: str) -> None:
    """Raise :class:`HeadGone` when the head's GCS port no longer accepts connections."""
    try:
        check_ray_reachable(gcs, seconds=HEAD_CHECK_SECONDS)
    except NormlabError:
        raise HeadGone(
            f"--address {address}: the Ray head at {gcs} went away during the study; finished "
            "runs are kept, the unfinished ones are retried when you rerun the same command"
        ) from None


def _train_with_payload(
    train: UnitTrainer,
    payload: bytes,
    unit: Sequence[RunConfig],
    threads: int,
    execution: Execution,
) -> list[RunResult]:
    install_payload(payload)  # once per Ray worker process (by content hash)
    return train(unit, threads, execution)
