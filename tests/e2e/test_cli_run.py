"""`normlab run --quick`, `normlab list` and argument errors, end to end through the CLI."""

import contextlib
import io
import sqlite3
import subprocess

import pytest

from normlab.cli import TrackerBar, TrackerStatus, main
from normlab.norms import norm_names


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "out"
    # In-process (main() is what the `normlab` process exits with; `run --quick` as a process:
    # test_cli_data.py, tests/study/test_lock.py): no interpreter start and torch warm-up.
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["run", "--quick", "--out", str(out), "--workers", "1"])
    return out, subprocess.CompletedProcess([], code, stdout.getvalue(), stderr.getvalue())


def test_run_quick_trains_stores_and_prints_the_table(quick_run):
    out, result = quick_run
    assert result.returncode == 0, result.stderr
    assert "Recommendation:" in result.stdout and "batch 8" in result.stdout
    with sqlite3.connect(out / "normlab.db") as db:
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
        epochs = db.execute("SELECT COUNT(*) FROM epochs").fetchone()[0]
    assert sum(statuses.values()) == 32
    assert statuses.get("pending", 0) == statuses.get("running", 0) == 0
    assert epochs > 0
    report = (out / "report.md").read_text()
    assert "| norm | batch 8 | batch 64 |" in report and "## Verdict" in report


def test_rerun_resumes_without_training(quick_run, capsys):
    out, _ = quick_run
    assert main(["run", "--quick", "--out", str(out), "--workers", "1"]) == 0
    assert "0 runs trained, 32 already finished" in capsys.readouterr().out


def test_the_progress_display_ticks_while_packs_train_without_results():
    # Before, "elapsed" was a field updated when a result arrived: frozen at 0s for as long as
    # the first packs trained, and the ETA stayed -:--:--.
    from normlab.study.progress import ProgressTracker

    now = [0.0]
    tracker = ProgressTracker(lambda: now[0])
    tracker.set_calibration(0.5)
    tracker.set_phase("training")
    tracker.add([["a", "b"], ["c"]], [60.0, 10.0])
    tracker.dispatched("a")
    status = TrackerStatus(tracker)
    texts = []
    for now[0] in (1.0, 31.0, 61.0):
        texts.append(status.render(None).plain)
    assert [text.split("elapsed ")[1][:7] for text in texts] == ["0:00:01", "0:00:31", "0:01:01"]
    assert all("0/3 runs" in text and "training: 1 pack (2 runs)" in text for text in texts)
    assert "ETA -:--:--" not in texts[0]
    bar = TrackerBar(tracker).render(None)
    assert (bar.total, bar.completed) == (3, 0)


def test_list_norms_prints_every_name_with_citation(capsys):
    assert main(["list", "norms"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == norm_names()
    assert all(len(line.split()) > 1 for line in lines)


@pytest.mark.parametrize("what", ["models", "datasets"])
def test_list_models_and_datasets(capsys, what):
    assert main(["list", what]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize(
    "args",
    [["list", "cars"], ["run", "--workers", "many"], ["frobnicate"], ["run", "--bogus"]],
)
def test_bad_arguments_are_one_line_and_exit_2(capsys, args):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("normlab: error:") and "\n" not in err


def test_usage_error_hint_names_the_command_once(capsys):
    assert main(["frobnicate"]) == 2
    assert "(see 'normlab --help')" in capsys.readouterr().err
    assert main(["list", "cars"]) == 2
    assert "(see 'normlab list --help')" in capsys.readouterr().err


def test_a_bad_store_is_one_line_on_stderr_and_left_untouched(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "normlab.db").write_text("not a database")
    assert main(["run", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("normlab: error:") and err.count("\n") == 1, repr(err)
    assert "not a normlab store" in err
    assert [p.name for p in out.iterdir()] == ["normlab.db"]
    assert (out / "normlab.db").read_text() == "not a database"


@pytest.mark.parametrize("flag", ["--workers", "--threads"])
def test_zero_workers_or_threads_is_refused_before_anything_is_written(capsys, tmp_path, flag):
    out = tmp_path / "out"
    assert main(["run", "--quick", "--out", str(out), flag, "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("normlab: error:") and flag in err and err.count("\n") == 1
    assert not out.exists()


def test_help_for_each_command(capsys):
    for args in (["--help"], ["run", "--help"], ["list", "--help"], ["study", "--help"]):
        assert main(args) == 0
    assert "--quick" in capsys.readouterr().out
