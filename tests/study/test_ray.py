"""The ``ray`` executor against a running Ray head on 127.0.0.1 (started by .ci/run inside a
network namespace that has only loopback).

The head is found like the CLI finds it: ``$RAY_ADDRESS``, else ``"auto"``.
"""

from __future__ import annotations

import pytest

from normlab.study import STORE_NAME, open_store, run_study, spec_from_dict
from normlab.study.ray_executor import resolve_address

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

SPEC = {
    "study": {"name": "ray", "seeds": [0, 1]},
    "run": {
        "dataset": "synthetic",
        "dataset_options": {"num_examples": 200},
        "depth": 8,
        "widths": [4, 4, 4],
        "epochs": 1,
        "batch_size": 16,
    },
    "factors": {"norm": ["bn", "none", "gn"]},
    "lr": {"mode": "fixed", "base_lr": 0.05},
}


@pytest.fixture(scope="module")
def loopback_head() -> str:
    """The head's address, after checking that every node of the cluster is on loopback."""
    address = resolve_address(None)
    ray.init(address=address, log_to_driver=False, logging_level="warning")
    try:
        gcs = ray.get_runtime_context().gcs_address
        nodes = [node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]]
    finally:
        ray.shutdown()
    if not gcs.startswith("127.0.0.1:") or set(nodes) != {"127.0.0.1"}:
        pytest.fail(f"Ray head at {gcs} with nodes {nodes}: tests only use a loopback cluster")
    return address


def metrics(out) -> dict[str, dict]:
    """Each run's status, metrics, diagnostics and curve, without timings."""
    timings = ("wall_time", "images_per_sec", "updated_at", "precise_seconds")

    def untimed(record: dict) -> dict:
        return {
            k: untimed(v) if isinstance(v, dict) else v
            for k, v in record.items()
            if k not in timings
        }

    with open_store(out / STORE_NAME, create=False) as store:
        return {
            record["run_id"]: {**untimed(record), "curve": store.curves(record["run_id"])}
            for record in store.records()
        }


def test_ray_tasks_give_the_metrics_of_a_local_run(loopback_head, tmp_path):
    spec = spec_from_dict(SPEC)
    outcome = run_study(spec, tmp_path / "ray", executor="ray", address=loopback_head)
    assert (outcome.planned, outcome.trained) == (6, 6)
    assert not ray.is_initialized()  # the executor disconnected; the cluster keeps running
    run_study(spec, tmp_path / "local", workers=1, threads=1)
    on_ray, local = metrics(tmp_path / "ray"), metrics(tmp_path / "local")
    assert {r["status"] for r in on_ray.values()} == {"done"}
    assert {r["threads"] for r in on_ray.values()} == {1}  # one CPU and one torch thread per task
    assert on_ray == local

    again = run_study(spec, tmp_path / "ray", executor="ray", address=loopback_head)
    assert (again.trained, again.skipped) == (0, 6)
