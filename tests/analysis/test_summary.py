"""LR selection on val, test reported at the selected lr, winners; pure functions on records."""

import statistics

import pytest

from normlab.analysis import format_mean_std, summarize, winners


def record(norm, batch, lr, seed, val, test, status="done", batch_test=None):
    return {
        "run_id": f"{norm}-{batch}-{lr}-{seed}",
        "config": {"norm": norm, "batch_size": batch, "lr": lr, "seed": seed},
        "cell": {"norm": norm, "batch_size": batch},
        "status": status,
        "val_acc": val if status == "done" else None,
        "test_acc": test if status == "done" else None,
        "test_acc_batch_stats": (batch_test if batch_test is not None else test)
        if status == "done"
        else None,
    }


def test_selects_lr_by_mean_val_and_reports_test_there():
    records = [
        record("bn", 8, 0.01, 0, val=0.80, test=0.99),  # best test, worse val: not selected
        record("bn", 8, 0.01, 1, val=0.80, test=0.99),
        record("bn", 8, 0.1, 0, val=0.90, test=0.85),
        record("bn", 8, 0.1, 1, val=0.92, test=0.87),
    ]
    (cell,) = summarize(records)
    assert cell.selected_lr == 0.1
    assert cell.test_mean == pytest.approx(0.86)
    assert cell.test_std == pytest.approx(statistics.stdev([0.85, 0.87]))
    assert cell.lr_at_grid_edge


def test_diverged_runs_count_as_zero_in_selection():
    records = [
        record("none", 8, 0.3, 0, val=0.99, test=0.99),
        record("none", 8, 0.3, 1, val=None, test=None, status="diverged"),
        record("none", 8, 0.1, 0, val=0.70, test=0.7),
        record("none", 8, 0.1, 1, val=0.70, test=0.7),
    ]
    (cell,) = summarize(records)
    assert cell.selected_lr == 0.1  # 0.70 > (0.99 + 0) / 2
    assert cell.diverged_total == 1 and cell.diverged == 0


def test_pending_runs_make_a_cell_incomplete():
    records = [record("bn", 8, 0.1, 0, 0.9, 0.9), record("bn", 8, 0.1, 1, 0, 0, status="pending")]
    (cell,) = summarize(records)
    assert not cell.complete and cell.seeds == 1


def test_winner_per_batch_size_and_noise_flag():
    records = []
    for seed, (bn, gn) in enumerate([(0.90, 0.95), (0.92, 0.96), (0.91, 0.94)]):
        records += [record("bn", 2, 0.1, seed, 0.9, bn), record("gn", 2, 0.1, seed, 0.9, gn)]
    for seed, (bn, gn) in enumerate([(0.97, 0.96), (0.95, 0.965), (0.96, 0.955)]):
        records += [record("bn", 32, 0.1, seed, 0.9, bn), record("gn", 32, 0.1, seed, 0.9, gn)]
    result = {w.group["batch_size"]: w for w in winners(summarize(records))}
    assert result[2].best == "gn" and result[2].clear
    assert result[2].margin == pytest.approx(0.95 - 0.91)
    assert result[32].best == "bn" and not result[32].clear  # 0.0017 < seed std


def test_a_clear_winner_needs_the_paired_comparison():
    # The demonstration: bn [.90, .91, .92] against gn [.935, .925, .915] was a "clear"
    # gn win by 1.5 points (the margin exceeds both seed sds) although the paired Holm p is 0.32.
    records = []
    for seed, (bn, gn) in enumerate([(0.90, 0.935), (0.91, 0.925), (0.92, 0.915)]):
        records += [record("bn", 4, 0.1, seed, 0.9, bn), record("gn", 4, 0.1, seed, 0.9, gn)]
    (winner,) = winners(summarize(records))
    assert winner.best == "gn" and winner.margin == pytest.approx(0.015)
    assert not winner.clear and winner.p_holm == pytest.approx(0.3235, abs=1e-4)


def test_a_consistent_small_paired_win_is_clear():
    records = []
    for seed, bn in enumerate([0.90, 0.95, 0.92, 0.97, 0.93]):
        gn = bn + 0.004 + 0.0002 * seed  # below both seed sds, but in every seed
        records += [record("bn", 4, 0.1, seed, 0.9, bn), record("gn", 4, 0.1, seed, 0.9, gn)]
    (winner,) = winners(summarize(records))
    assert winner.best == "gn" and winner.clear


def test_a_diverged_seed_at_the_selected_lr_counts_as_zero_in_the_test_mean():
    records = [
        record("bn", 8, 0.1, 0, val=0.90, test=0.90),
        record("bn", 8, 0.1, 1, val=None, test=None, status="diverged"),
        record("bn", 8, 0.1, 2, val=0.90, test=0.92),
    ]
    (cell,) = summarize(records)
    assert cell.test_accs == (0.90, 0.0, 0.92) and cell.test_seeds == (0, 1, 2)
    assert format_mean_std(cell).startswith("0.607 ± ") and "(1 div.)" in format_mean_std(cell)


def test_format_mean_std():
    (cell,) = summarize([record("bn", 8, 0.1, 0, 0.9, 0.9), record("bn", 8, 0.1, 1, 0.9, 0.8)])
    assert format_mean_std(cell) == "0.850 ± 0.071"


def test_variant_and_context_of_norm_scoped_options():
    from normlab.analysis import context, variant

    cell = {"norm": "gn", "batch_size": 4, "norm_options.gn.groups": 2, "norm_options.eps": 1e-3}
    assert variant(cell) == "gn(groups=2)"
    assert context(cell) == {"batch_size": 4, "norm_options.eps": 1e-3}


def test_fixed_norm_and_batch_size_still_label_the_cell():
    fixed = record("bn", 8, 0.1, 0, 0.9, 0.9)
    fixed["cell"] = {"dropout": 0.1}  # norm and batch size held fixed under [run]
    (cell,) = summarize([fixed])
    assert cell.cell == {"norm": "bn", "batch_size": 8, "dropout": 0.1}


def test_incomplete_cell_is_marked_in_the_table_text():
    records = [
        record("bn", 8, 0.1, 0, 0.9, 0.9),
        record("bn", 8, 0.1, 1, 0.9, 0.8),
        record("bn", 8, 0.1, 2, 0, 0, status="failed"),
    ]
    (cell,) = summarize(records)
    assert (cell.finished, cell.planned, cell.complete) == (2, 3, False)
    assert format_mean_std(cell) == "0.850 ± 0.071 [2/3 runs finished]"
