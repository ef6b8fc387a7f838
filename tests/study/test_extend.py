"""LR grid extension: cells whose selected lr sits at a grid edge get values beyond it, up to
``[lr] extend`` per side, resume-safe; each invocation's wall time is a leg in the store."""

from __future__ import annotations

import math
import sqlite3

import pytest

from normlab.study import (
    STORE_NAME,
    StudyProgress,
    executors,
    open_store,
    run_study,
    spec_from_dict,
)
from normlab.study.store import MIGRATIONS, SCHEMA_VERSION, read_version
from normlab.train import RunResult


def spec(extend=2, grid=(0.01, 0.03, 0.1)):
    return spec_from_dict(
        {
            "study": {"name": "extend me", "seeds": [0, 1]},
            "run": {
                "dataset": "synthetic",
                "dataset_options": {"num_examples": 200},
                "depth": 8,
                "widths": [4, 4, 4],
                "epochs": 1,
                "batch_size": 16,
            },
            "factors": {"norm": ["bn", "gn"]},
            "lr": {"mode": "tuned", "grid": list(grid), "grid_scaling": "none", "extend": extend},
        }
    )


def fake_training(best_lr):
    """Val and test accuracy peak at ``best_lr[norm]`` (log distance); no training."""

    def train_runs(unit, dataset, **options):
        results = []
        for config in unit:
            accuracy = 0.9 - 0.05 * abs(math.log(config.lr / best_lr[config.norm]))
            results.append(
                RunResult(
                    run_id=config.run_id,
                    status="done",
                    test_acc=accuracy,
                    test_acc_batch_stats=accuracy,
                    val_acc=accuracy,
                    train_loss=0.1,
                    train_acc=0.9,
                )
            )
        return results

    return train_runs


def lrs_tried(out, norm):
    with open_store(out / STORE_NAME, create=False) as store:
        return sorted({r["config"]["lr"] for r in store.records() if r["config"]["norm"] == norm})


def test_edge_cells_are_extended_until_interior_or_the_limit(tmp_path, monkeypatch):
    # bn's best lr lies far below the grid: two values are added below (ratio 3, the grid's
    # lower step), then the limit stops it. gn's best, 0.15, is above the grid: 0.333 (ratio
    # 0.1 / 0.03) is added; it is worse than 0.1, which is now interior.
    monkeypatch.setattr(executors, "train_runs", fake_training({"bn": 1e-4, "gn": 0.15}))
    outcome = run_study(spec(), tmp_path, workers=1, threads=1)
    assert lrs_tried(tmp_path, "bn") == [0.00111, 0.00333, 0.01, 0.03, 0.1]
    assert lrs_tried(tmp_path, "gn") == [0.01, 0.03, 0.1, 0.333]
    assert outcome.trained == 12 + 2 * 2 + 2  # planned, bn's two values, gn's one, 2 seeds each


def test_the_progress_total_grows_with_the_runs_the_extension_adds(tmp_path, monkeypatch):
    # Before, the display's total was the runs planned (12) and it ended at "18/12".
    monkeypatch.setattr(executors, "train_runs", fake_training({"bn": 1e-4, "gn": 0.15}))
    progress = StudyProgress()
    outcome = run_study(spec(), tmp_path, workers=1, threads=1, progress=progress)
    snapshot = progress.tracker.snapshot()
    assert outcome.trained == 18
    assert (snapshot.finished, snapshot.total) == (18, 18)


def test_no_extension_when_extend_is_zero_and_rerun_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "train_runs", fake_training({"bn": 1e-4, "gn": 0.03}))
    run_study(spec(extend=0), tmp_path, workers=1, threads=1)
    assert lrs_tried(tmp_path, "bn") == [0.01, 0.03, 0.1]
    monkeypatch.setattr(executors, "train_runs", fake_training({"bn": 1e-4, "gn": 0.03}))
    run_study(spec(), tmp_path / "again", workers=1, threads=1)
    outcome = run_study(spec(), tmp_path / "again", workers=1, threads=1)
    assert outcome.trained == 0  # the extension is resumed, not repeated


def test_an_interrupted_extension_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "train_runs", fake_training({"bn": 1e-4, "gn": 0.03}))
    run_study(spec(), tmp_path, workers=1, threads=1)
    with sqlite3.connect(tmp_path / STORE_NAME) as db:
        db.execute("UPDATE runs SET status = 'pending' WHERE config LIKE '%0.00111%'")
    db.close()
    outcome = run_study(spec(), tmp_path, workers=1, threads=1)
    assert outcome.trained == 2 and lrs_tried(tmp_path, "bn")[0] == 0.00111


def test_each_invocation_is_a_leg(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "train_runs", fake_training({"bn": 0.03, "gn": 0.03}))
    run_study(spec(), tmp_path, workers=1, threads=1)
    run_study(spec(), tmp_path, workers=1, threads=1)
    with open_store(tmp_path / STORE_NAME, create=False) as store:
        legs = store.legs(spec().study_id)
    assert len(legs) == 2 and all(leg >= 0 for leg in legs)


def test_a_version_4_store_gains_the_legs_table(tmp_path):
    path = tmp_path / "normlab.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        + "".join(MIGRATIONS[v] + f"INSERT INTO schema_version VALUES ({v});" for v in range(1, 5))
    )
    db.execute("INSERT INTO studies VALUES ('old', 'old study', '{}', 0, NULL)")
    db.commit()
    db.close()
    assert read_version(path) == 4
    with open_store(path) as store:
        assert store.legs("old") == []
        store.add_leg("old", 12.5)
        assert store.legs("old") == [12.5] and store.study_name("old") == "old study"
    assert read_version(path) == SCHEMA_VERSION


def test_a_foreign_study_is_named_not_hashed(tmp_path, monkeypatch):
    from normlab.errors import NormlabError

    monkeypatch.setattr(executors, "train_runs", fake_training({"bn": 0.03, "gn": 0.03}))
    run_study(spec(), tmp_path, workers=1, threads=1)
    other = spec(grid=(0.02, 0.05))
    with pytest.raises(NormlabError, match="holds a different study \\('extend me'; this spec"):
        run_study(other, tmp_path, workers=1, threads=1)
