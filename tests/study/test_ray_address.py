"""An explicit Ray address where no head listens, or no cluster to join, is refused with one
line before the output folder or the store is touched (no Ray head needed: a free port on
127.0.0.1)."""

from __future__ import annotations

import socket

import pytest

from normlab.cli import main
from normlab.errors import NormlabError
from normlab.study import ray_executor, run_study, spec_from_dict

pytest.importorskip("ray")

SPEC = spec_from_dict(
    {
        "study": {"name": "ray", "seeds": [0]},
        "run": {"dataset": "synthetic", "dataset_options": {"num_examples": 96}, "epochs": 1},
        "factors": {"norm": ["bn"]},
        "lr": {"mode": "fixed", "base_lr": 0.05},
    }
)


@pytest.fixture
def silent_address():
    """host:port on loopback where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


def test_an_unreachable_address_is_refused_before_the_store(silent_address, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(NormlabError, match=f"--address {silent_address}: no Ray head answered"):
        run_study(SPEC, out, executor="ray", address=silent_address)
    assert not out.exists()


def test_the_cli_refuses_in_one_line_with_exit_2(silent_address, tmp_path, capsys, monkeypatch):
    # 1 s instead of the bound (CONNECT_SECONDS, 10 s): the same refusal, sooner.
    monkeypatch.setattr(ray_executor.check_ray_reachable, "__defaults__", (1.0,))
    out = tmp_path / "out"
    code = main(
        ["run", "--quick", "--executor", "ray", "--address", silent_address, "--out", str(out)]
    )
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and silent_address in error
    assert not out.exists()


def test_ray_address_from_the_environment_is_checked_too(silent_address, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", silent_address)
    with pytest.raises(NormlabError, match=f"--address {silent_address}"):
        ray_executor.check_ray_reachable(None, seconds=1.0)


def test_no_cluster_to_join_is_refused(monkeypatch):
    import ray._private.services as services

    def none_here(address, temp_dir=None):
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "canonicalize_bootstrap_address", none_here)
    with pytest.raises(NormlabError, match="no Ray cluster to join"):
        ray_executor.check_ray_reachable(None, seconds=1.0)
