"""Adaptive studies: tuning seeds select a cell's lr, evaluation seeds alone are reported and
compared; fixed-protocol records (role "") are summarized exactly as before."""

import pytest
from synthetic_records import BN_WORSE_SMALL, TUNING_SEED, adaptive_records, study_records

from normlab.analysis.compare import cell_statistics, compare_cells
from normlab.analysis.summary import NOT_EVALUATED, format_mean_std, summarize

MEANS = {("bn", 4): 0.85, ("gn", 4): 0.93}


def by_norm(items):
    return {item.cell["norm"] if hasattr(item, "cell") else item.label: item for item in items}


def test_lr_from_tuning_seeds_test_from_evaluation_seeds():
    records = adaptive_records(MEANS, rounds=(3, 2))
    summaries = by_norm(summarize(records))
    for norm, summary in summaries.items():
        evaluation = sorted(
            (r for r in records if r["role"] == "eval" and r["config"]["norm"] == norm),
            key=lambda r: r["config"]["seed"],
        )
        assert summary.selected_lr == 0.03
        assert summary.test_seeds == (0, 1, 2, 3, 4)
        assert summary.test_accs == tuple(r["test_acc"] for r in evaluation)
        assert summary.seeds == 5 and summary.diverged == 0
        # Validation means are those of the two tuning seeds of each lr only.
        tuning = [
            r["val_acc"]
            for r in records
            if r["role"] == "tune" and r["config"]["norm"] == norm and r["config"]["lr"] == 0.03
        ]
        assert summary.val_by_lr[0.03] == pytest.approx(sum(tuning) / len(tuning))
        assert summary.val_accs_by_lr[0.03] == tuple(tuning)
        # Every run of the cell (3 lrs x 2 tuning seeds, 5 evaluation seeds) counts as finished.
        assert summary.finished == summary.planned == 3 * 2 + 5


def test_evaluation_runs_never_select_the_lr():
    # Tuning prefers 0.01; evaluation runs (stored at 0.03, say by a planner bug) have a better
    # validation accuracy there: selection must not see them, and no evaluation seed is reported.
    records = adaptive_records(MEANS, best_lr=0.01)
    for record in records:
        if record["role"] == "eval":
            record["config"]["lr"] = 0.03
            record["val_acc"] = 0.999
    summary = by_norm(summarize(records))["bn"]
    assert summary.selected_lr == 0.01
    assert summary.seeds == 0 and summary.test_accs == () and summary.test_mean is None
    assert format_mean_std(summary) == NOT_EVALUATED


def test_comparisons_pair_evaluation_seeds_only():
    records = adaptive_records(MEANS, rounds=(3, 2, 2))
    cells = by_norm(cell_statistics(records))
    assert set(cells["bn"].test_by_seed) == set(range(7))
    assert not any(seed >= TUNING_SEED for seed in cells["gn"].test_by_seed)
    (comparison,) = compare_cells(list(cells.values()), "bn")
    expected = [cells["bn"].test_by_seed[s] - cells["gn"].test_by_seed[s] for s in range(7)]
    assert comparison.seeds == 7
    assert comparison.differences == pytest.approx(expected)
    # Means near the planted 8-point gap: tuning runs (20 points off) never entered.
    assert comparison.difference == pytest.approx(0.85 - 0.93, abs=0.01)
    # LR-selection honesty is measured on the tuning seeds, where the lrs were all trained.
    assert cells["bn"].top_lrs == (0.03,)


def test_fixed_protocol_records_unchanged_by_an_empty_role():
    records = study_records(BN_WORSE_SMALL, seeds=3)
    tagged = [{**r, "role": "", "round": 0} for r in records]
    assert summarize(tagged) == summarize(records)
    plain = compare_cells(cell_statistics(records), "bn")
    assert compare_cells(cell_statistics(tagged), "bn") == plain
