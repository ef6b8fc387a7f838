"""A context the task cannot discriminate (ceiling or chance) is named first, and no winner is
drawn from it; divergences at a selected lr are named (explicit per-seed records)."""

from synthetic_records import seed_records

from normlab.analysis.caveats import CEILING, saturation
from normlab.analysis.compare import cell_statistics, compare_cells
from normlab.analysis.verdict import verdict

NORMS = ("bn", "gn", "ln", "none")


def analyse(records):
    cells = cell_statistics(records)
    return cells, verdict(cells, compare_cells(cells, "bn"), "norm", "bn")


def test_a_saturated_task_is_not_reported_as_a_win():
    # Issue 22's demonstration: every cell reaches 1.000 and the verdict said "bn has the best
    # mean" of a four-way tie.
    cells, result = analyse(seed_records({(n, 8): [1.0, 1.0, 1.0] for n in NORMS}))
    assert saturation(cells) == "ceiling"
    assert result.sentences[0].startswith(
        "At batch size 8, every level of norm reaches the ceiling"
    )
    assert "--max-train" in result.sentences[0] and "--augment" in result.sentences[0]
    assert "best mean" not in result.paragraph and "keep bn" not in result.recommendation
    assert result.recommendation.startswith("Recommendation: none yet")


def test_only_the_saturated_context_is_set_aside():
    accuracies = {(n, 8): [1.0, 0.998, 1.0] for n in NORMS}
    accuracies |= {("bn", 2): [0.80, 0.81, 0.82], ("gn", 2): [0.90, 0.92, 0.91]}
    accuracies |= {("ln", 2): [0.85, 0.86, 0.86], ("none", 2): [0.70, 0.71, 0.69]}
    _, result = analyse(seed_records(accuracies))
    assert result.sentences[0].startswith("At batch size 8, every level of norm reaches")
    assert "bn's test accuracy is 10.0 points below gn" in result.paragraph
    assert "batch size 8" not in result.recommendation


def test_one_cell_below_the_ceiling_is_not_saturation():
    accuracies = {(n, 8): [1.0, 1.0, 1.0] for n in NORMS}
    accuracies[("gn", 8)] = [1.0, CEILING - 0.01, 1.0]
    cells, result = analyse(seed_records(accuracies))
    assert saturation(cells) is None and "ceiling" not in result.paragraph


def test_a_task_at_chance_says_it_was_not_learned():
    records = seed_records({(n, 8): [0.1, 0.1, None] for n in NORMS})
    for record in records:
        record["collapsed"] = int(record["status"] == "done")
    cells, result = analyse(records)
    assert saturation(cells) == "chance"
    assert result.sentences[0].startswith("At batch size 8, every level of norm finished at chance")
    assert "not learned" in result.sentences[0]
