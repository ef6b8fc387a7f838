"""One driver per output folder: a second driver, a real process, is refused naming the holder
and writes nothing; a SIGKILLed holder never blocks the next driver; export and report read a
held folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from normlab.cli import main
from normlab.errors import NormlabError
from normlab.study import run_study, spec_from_dict
from normlab.study.lock import LOCK_NAME, hold_folder, refuse_if_held

HOLDER = textwrap.dedent(
    """
    import sys, time
    from normlab.study.lock import hold_folder
    with hold_folder(sys.argv[1]):
        print("held", flush=True)
        time.sleep(600)
    """
)


def _held(out):
    """Another process holding ``out``; killed (SIGKILL) at the end if alive."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    yield out, process
    if process.poll() is None:
        process.kill()
    process.wait()


@pytest.fixture
def holder(tmp_path):
    """Another process holding ``tmp_path / "out"``, for a test that may kill it."""
    yield from _held(tmp_path / "out")


@pytest.fixture(scope="module")
def shared_holder(tmp_path_factory):
    """One holder for the tests that only try the held folder (starting one takes seconds)."""
    yield from _held(tmp_path_factory.mktemp("held") / "out")


def snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def test_a_second_driver_is_refused_naming_the_holder_and_writes_nothing(shared_holder, capsys):
    out, process = shared_holder
    before = snapshot(out)
    code = main(["run", "--quick", "--out", str(out), "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert f"pid {process.pid}," in error and "in use by another normlab driver" in error
    assert "host " in error and "started " in error and "command " in error
    assert snapshot(out) == before  # nothing written: no store, no report


def test_the_second_driver_is_a_real_process_too(shared_holder):
    out, process = shared_holder
    result = subprocess.run(
        [sys.executable, "-m", "normlab.cli", "run", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"pid {process.pid}," in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the holder's only


def test_a_sigkilled_holder_does_not_block_the_next_driver(holder):
    out, process = holder
    with pytest.raises(NormlabError, match=f"pid {process.pid},"):
        refuse_if_held(out)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    refuse_if_held(out)
    with hold_folder(out):
        with hold_folder(out):  # re-entrant in one process (the CLI and run_study both hold)
            pass
        assert f'"pid": {os.getpid()}' in (out / LOCK_NAME).read_text()
    assert not (out / LOCK_NAME).exists()  # released: removed


def test_a_refused_study_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(NormlabError, match="--workers"), hold_folder(out):
        raise NormlabError("--workers: refused before the store existed")
    assert not out.exists()


def test_export_and_report_read_a_held_folder(tmp_path, capsys):
    out = tmp_path / "out"
    spec = spec_from_dict(
        {
            "study": {"name": "held", "seeds": [0]},
            "run": {
                "dataset": "synthetic",
                "dataset_options": {"num_examples": 120},
                "depth": 8,
                "widths": [4, 4, 4],
                "epochs": 1,
                "batch_size": 16,
            },
            "factors": {"norm": ["bn", "none"]},
            "lr": {"mode": "fixed", "base_lr": 0.05},
        }
    )
    run_study(spec, out, workers=1, threads=1)
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "held"
        assert main(["export", str(out), "--output", str(tmp_path / "runs.csv")]) == 0
        assert main(["report", str(out)]) == 0
        assert (tmp_path / "runs.csv").exists() and (out / "report.md").exists()
        with pytest.raises(NormlabError, match="in use by another normlab driver"):
            run_study(spec, out, workers=1, threads=1)
    finally:
        process.kill()
        process.wait()
