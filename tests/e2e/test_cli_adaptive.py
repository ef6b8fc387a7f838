"""The adaptive protocol end to end on tiny synthetic data, through the CLI: what it concludes
about levels known to differ or not, the budget kept, continued with a larger one, and resumed
after a SIGKILL."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_kill_resume import count, start, wait_for

from normlab.analysis.adaptive import assess_study
from normlab.cli import main
from normlab.study import load_spec, open_store

SPEC = """
[study]
name = "{name}"
protocol = "adaptive"
tuning_seeds = 1
max_seeds = {max_seeds}
margin = {margin}
compare = "{compare}"
{budget}

[run]
dataset = "synthetic"
dataset_options = {{ num_examples = 600, num_classes = 4, size = 8, noise = 0.8 }}
depth = 8
widths = [4, 8, 8]
epochs = {epochs}
norm = "gn"
batch_size = 16

[run.norm_options.gn]
groups = 2

[factors]
{compare} = {levels}

[lr]
grid = [0.03, 0.1]
extend = 0
"""

# bn_momentum sets the running-statistics momentum of the norms that keep running statistics;
# GroupNorm keeps none, so its two levels are the same computation under two names (same
# seeds, same data order: identical runs, every paired difference 0).
SAME = {"compare": "bn_momentum", "levels": "[0.1, 0.2]"}
# A weight decay of 3 shrinks the weights faster than any lr of the grid can fit the data: the
# second level is sabotaged (it ends near chance, 25%, where the first learns the task).
SABOTAGED = {"compare": "weight_decay", "levels": "[0.0, 3.0]"}


def write(
    tmp_path: Path, levels: dict[str, str], max_seeds=6, margin=0.01, budget=None, epochs=2
) -> Path:
    path = tmp_path / "study.toml"
    line = f'budget = "{budget}"' if budget else ""
    text = SPEC.format(
        name="tiny", max_seeds=max_seeds, margin=margin, budget=line, epochs=epochs, **levels
    )
    path.write_text(text)
    return path


def study(spec: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "normlab.cli", "study", str(spec), "--out", str(out)]
    return subprocess.run(
        [*command, "--workers", "1", "--quiet", *args], capture_output=True, text=True, timeout=300
    )


def study_here(spec: Path, out: Path, capsys) -> tuple[int, str, str]:
    """:func:`study` in this process (``main()`` is what the ``normlab`` process exits with),
    sparing an interpreter start where the test is about what the protocol concludes:
    (exit code, stdout, stderr)."""
    code = main(["study", str(spec), "--out", str(out), "--workers", "1", "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assessed(spec: Path, out: Path):
    loaded = load_spec(spec)
    with open_store(out / "normlab.db") as store:
        records = store.records(loaded.study_id)
        legs = store.legs(loaded.study_id)
    design = loaded.adaptive.design()
    return assess_study(records, design, str(loaded.baseline), loaded.compare), records, legs


def runs(out: Path) -> list[tuple[str, str, str, int, int]]:
    with sqlite3.connect(out / "normlab.db") as db:
        rows = db.execute("SELECT run_id, status, role, round, attempts FROM runs").fetchall()
    db.close()
    return rows


def test_levels_that_make_no_difference_never_end_significant(tmp_path, capsys):
    # One epoch a run: identical runs differ by exactly 0 however long they train.
    spec, out = write(tmp_path, SAME, epochs=1), tmp_path / "out"
    code, stdout, stderr = study_here(spec, out, capsys)
    assert code == 0, stderr
    (comparison,), records, _ = assessed(spec, out)
    assert comparison.assessment.status in ("equivalent", "unresolved")
    assert set(comparison.differences) == {0.0}
    # Tuning and evaluation seeds are disjoint; round 2 went to the open context.
    seeds = {
        role: {r["config"]["seed"] for r in records if r["role"] == role}
        for role in ("tune", "eval")
    }
    assert seeds == {"tune": {1000}, "eval": set(range(6))}
    assert "Adaptive protocol: stopped after evaluation round 2" in stdout


def test_a_sabotaged_level_ends_significant(tmp_path, capsys):
    spec, out = write(tmp_path, SABOTAGED), tmp_path / "out"
    code, _, stderr = study_here(spec, out, capsys)
    assert code == 0, stderr
    (comparison,), _, _ = assessed(spec, out)
    assert comparison.assessment.status == "better"  # the baseline (weight decay 0) is better
    assert comparison.assessment.interval.low > 0


def test_a_budget_too_small_is_refused_before_anything_trains(tmp_path, capsys):
    spec, out = write(tmp_path, SAME, budget="1s"), tmp_path / "out"
    code, _, err = study_here(spec, out, capsys)  # a real process: the budget and kill tests
    assert code == 2
    assert "is too small" in err and "the smallest budget that would do is" in err
    assert count(out, "done") == 0


def test_the_budget_is_kept_and_a_larger_one_continues_without_retraining(tmp_path):
    # A margin no interval fits in and 30 seeds: rounds go on until the budget stops them.
    spec = write(tmp_path, SAME, max_seeds=30, margin=0.0001, budget="15s", epochs=4)
    out = tmp_path / "out"
    first = study(spec, out)
    assert first.returncode == 0, first.stderr
    _, records, legs = assessed(spec, out)
    assert sum(legs) <= 15.0  # the promise
    assert "the next round would overrun the budget" in first.stdout
    rounds_before = max(r["round"] for r in records)
    assert 1 <= rounds_before < 10

    spec.write_text(spec.read_text().replace('budget = "15s"', 'budget = "25s"'))
    second = study(spec, out)
    assert second.returncode == 0, second.stderr
    assert f"{len(records)} already finished" in second.stdout, second.stdout[-300:]
    _, records, legs = assessed(spec, out)
    assert len(legs) == 2 and sum(legs) <= 25.0
    assert max(r["round"] for r in records) > rounds_before
    assert {attempts for *_, attempts in runs(out)} == {1}  # nothing trained twice


@pytest.mark.parametrize("pack", ["off"])
def test_sigkill_in_a_round_then_the_same_command_resumes_it(tmp_path, pack):
    # One epoch a run: what is checked (no finished run retrained, 9 seeds) does not depend on it.
    spec, out = write(tmp_path, SAME, max_seeds=9, margin=0.0001, epochs=1), tmp_path / "out"
    process = start(spec, out, "--workers", "1", "--threads", "1", "--pack", pack, "--quiet")

    def in_round_2() -> bool:
        try:
            rows = runs(out) if (out / "normlab.db").exists() else []
        except sqlite3.OperationalError:  # the store is being created: no tables yet
            return False
        return any(
            role == "eval" and rnd >= 2 and status == "done" for _, status, role, rnd, _ in rows
        )

    try:
        wait_for(in_round_2, process)
    finally:
        process.kill()  # a failed wait must not leave the study training under later tests
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    before = {run_id: status for run_id, status, *_ in runs(out)}
    resumed = study(spec, out, "--threads", "1", "--pack", pack)
    assert resumed.returncode == 0, resumed.stderr
    after = runs(out)
    assert {status for _, status, *_ in after} == {"done"}
    # Runs finished before the kill were not trained again; only the one in flight may repeat.
    assert all(attempts == 1 for run_id, _, _, _, attempts in after if before.get(run_id) == "done")
    assert sum(attempts for *_, attempts in after) <= len(after) + 1
    (comparison,), _, _ = assessed(spec, out)
    assert comparison.assessment.seeds == 9
