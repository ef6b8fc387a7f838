"""Result tables and the Markdown report are computed from the records."""

from normlab.analysis import summarize
from normlab.report import result_tables, statistics_gap_table


def records():
    out = []
    for norm, batch, test, batch_test in [
        ("bn", 2, 0.5, 0.7),
        ("gn", 2, 0.8, 0.8),
        ("bn", 32, 0.9, 0.9),
        ("gn", 32, 0.85, 0.85),
    ]:
        out.append(
            {
                "config": {"norm": norm, "batch_size": batch, "lr": 0.1, "seed": 0},
                "cell": {"norm": norm, "batch_size": batch},
                "status": "done",
                "val_acc": 0.5,
                "test_acc": test,
                "test_acc_batch_stats": batch_test,
            }
        )
    return out


def test_result_table_has_norm_rows_batch_columns_and_winner():
    (table,) = result_tables(summarize(records()))
    assert table.header == ["norm", "batch_size 2", "batch_size 32"]
    assert table.rows[0][0] == "bn" and table.rows[0][1].startswith("0.500 (lr 0.1)")
    assert table.rows[-1][0] == "winner"
    assert table.rows[-1][1] == "gn (+0.300 over bn; fewer than 3 paired seeds, no test)"
    assert table.rows[-1][2] == "bn (+0.050 over gn; fewer than 3 paired seeds, no test)"


def test_statistics_gap_only_for_batch_norms():
    gap = statistics_gap_table(summarize(records()), {"bn"})
    assert [row[0] for row in gap.rows] == ["norm=bn, batch_size=2", "norm=bn, batch_size=32"]
    assert gap.rows[0][3] == "+0.200"


def test_norm_scoped_options_are_rows_not_separate_tables():
    rows = records()
    rows[1]["cell"] = {"norm": "gn", "batch_size": 2, "norm_options.gn.groups": 2}
    rows[3]["cell"] = {"norm": "gn", "batch_size": 32, "norm_options.gn.groups": 2}
    (table,) = result_tables(summarize(rows))
    assert [row[0] for row in table.rows] == ["bn", "gn(groups=2)", "winner"]
    assert table.rows[-1][1].startswith("gn(groups=2) (+0.300 over bn")
