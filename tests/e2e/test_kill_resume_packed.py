"""Packs survive SIGKILL and Ctrl-C: a pack interrupted mid-way retrains its unfinished runs on
resume, nothing finished is lost, and every planned run ends done exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys

from test_kill_resume import LONG, SPEC, count, start, wait_for


def test_sigkill_mid_pack_then_resume_trains_every_run_once(tmp_path):
    spec, out = tmp_path / "kill.toml", tmp_path / "out"
    spec.write_text(SPEC.format(epochs=2, examples=LONG))  # 6 cells x 2 seeds: 6 packs of 2
    process = start(spec, out, "--workers", "1", "--threads", "1")
    wait_for(lambda: count(out, "done") >= 2, process)
    process.kill()
    process.communicate()
    done_before = count(out, "done")
    assert 2 <= done_before < 12 and done_before % 2 == 0  # whole packs only
    resumed = subprocess.run(
        [sys.executable, "-m", "normlab.cli", "study", str(spec), "--out", str(out)]
        + ["--workers", "1", "--threads", "1", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{12 - done_before} runs trained, {done_before} already finished" in resumed.stdout
    with sqlite3.connect(out / "normlab.db") as db:
        runs = db.execute("SELECT status, attempts, pack_size FROM runs").fetchall()
    db.close()
    assert [(status, size) for status, _, size in runs] == [("done", 2)] * 12
    # The pack in flight at the kill (its two runs) was attempted twice; no other run was.
    attempts = sorted(attempts for _, attempts, _ in runs)
    assert attempts in ([1] * 12, [1] * 10 + [2] * 2), attempts


def test_ctrl_c_during_packs_requeues_them(tmp_path):
    spec, out = tmp_path / "long.toml", tmp_path / "out"
    spec.write_text(SPEC.format(epochs=50, examples=LONG))
    process = start(spec, out, "--workers", "2", "--threads", "1")
    wait_for(lambda: count(out, "running") == 4, process)  # two packs of two in flight
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert count(out, "pending") == 12 and count(out, "running") == 0
