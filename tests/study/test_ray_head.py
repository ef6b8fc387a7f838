"""A Ray head that goes away during a study (a real head on 127.0.0.1, started by .ci/run inside
a network namespace with only loopback): the driver stops with one line, exit 2, keeps the
finished runs, and the next invocation trains the rest; nothing is lost.

This test stops the head and starts it again as .ci/run does, so the head is up for whatever
runs after it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.ray

SPEC = """
[study]
name = "head gone"
seeds = [0, 1, 2, 3]
[run]
dataset = "synthetic"
dataset_options = { num_examples = 400 }
depth = 8
widths = [4, 4, 4]
epochs = 2
batch_size = 16
[factors]
norm = ["bn", "gn", "none"]
[lr]
mode = "fixed"
base_lr = 0.05
"""
HEAD = ["ray", "start", "--head", "--num-cpus", "2", "--include-dashboard=false"]
HEAD += ["--disable-usage-stats"]
WAIT_SECONDS = 240
"""Guards against a hang (a driver that never notices): the driver stops in seconds."""


def statuses(out) -> dict[str, int]:
    with sqlite3.connect(f"file:{out / 'normlab.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
    db.close()
    return dict(rows)


def test_a_head_that_goes_away_stops_the_driver_and_nothing_is_lost(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "normlab.cli", "study", str(spec), "--executor", "ray"]
    command += ["--pack", "off", "--out", str(out)]
    log = (tmp_path / "driver.err").open("w+")
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while " done " not in (tmp_path / "driver.err").read_text():
            assert driver.poll() is None and time.monotonic() < deadline, "no run finished"
            time.sleep(0.5)
        subprocess.run(["ray", "stop", "--force"], check=True, capture_output=True)
        code = driver.wait(timeout=WAIT_SECONDS)
    finally:
        if driver.poll() is None:
            driver.kill()
        subprocess.run(HEAD, capture_output=True)  # back up for the tests after this one
    last = (tmp_path / "driver.err").read_text().strip().splitlines()[-1]
    assert code == 2 and last.startswith("normlab: error:") and "went away" in last, last
    before = statuses(out)
    assert before.get("done", 0) >= 1 and "running" not in before  # in flight: back to retry
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert resumed.returncode == 0, resumed.stderr
    assert statuses(out) == {"done": 12}
