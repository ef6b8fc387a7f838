"""Verdict sentences say what the data say, for three synthetic result sets."""

import re

from synthetic_records import BN_ALWAYS_BEST, BN_WORSE_SMALL, NO_DIFFERENCE, study_records

from normlab.analysis.compare import cell_statistics, compare_cells, crossovers
from normlab.analysis.summary import cell_key
from normlab.analysis.verdict import verdict


def analyse(means, seeds=5, gaps=None):
    records = study_records(means, seeds=seeds)
    cells = cell_statistics(records)
    comparisons = compare_cells(cells, "bn")
    return cells, comparisons, verdict(cells, comparisons, "norm", "bn", gaps=gaps)


def test_bn_clearly_worse_at_small_batch():
    cells, comparisons, result = analyse(BN_WORSE_SMALL)
    text = result.paragraph
    # 0.93 - 0.85 = 8.0 points below gn at batch 2; 0.94 - 0.90 = 4.0 at batch 4.
    assert re.search(r"batch size 2, bn's test accuracy is 8\.\d points below gn", text)
    assert re.search(r"batch size 4, bn's test accuracy is 4\.\d points below gn", text)
    assert "95% CI" in text and "Holm p" in text
    assert "batch size 16 and 64" in text and "within noise of the best" in text
    assert (
        "at batch size 2 and 4 use gn" in result.recommendation
        and "keep bn at batch size 16 and 64" in text
    )
    (crossover,) = crossovers(comparisons)
    assert (crossover.worse_up_to, crossover.fine_from) == (4, 16)


def test_bn_always_best():
    _, comparisons, result = analyse(BN_ALWAYS_BEST)
    assert "below" not in result.paragraph
    assert result.paragraph.count("significantly better than every alternative") == 4
    assert result.recommendation.startswith("Recommendation: keep bn")
    (crossover,) = crossovers(comparisons)
    assert (crossover.worse_up_to, crossover.fine_from) == (None, 2)


def test_no_significant_difference():
    _, comparisons, result = analyse(NO_DIFFERENCE)
    assert not any(c.significant for c in comparisons)
    assert "No difference between bn and the other levels of norm is significant" in (
        result.paragraph
    )
    assert "no reason to change bn" in result.recommendation
    assert "below" not in result.paragraph and "better than every" not in result.paragraph


def test_too_few_seeds_says_there_is_no_ci():
    _, comparisons, result = analyse(BN_WORSE_SMALL, seeds=2)
    assert all(c.ci is None for c in comparisons)
    assert "no confidence intervals" in result.paragraph
    assert "no CI: fewer than 3 seeds" in result.paragraph


def test_gap_decomposition_names_precise_bn_recovery():
    records = study_records(BN_WORSE_SMALL)
    cells = cell_statistics(records)
    base = next(c for c in cells if c.label == "bn" and c.context == {"batch_size": 2})
    # PreciseBN gains 4 points of BN's deficit against gn at batch 2 (about 8 points).
    gaps = {
        cell_key(base.summary.cell): {
            s: {"running_acc": 0.85, "precise_acc": 0.89, "batch_acc": 0.9} for s in range(5)
        }
    }
    comparisons = compare_cells(cells, "bn")
    deficit = -min(c.difference for c in comparisons if c.context == {"batch_size": 2})
    result = verdict(cells, comparisons, "norm", "bn", gaps=gaps)
    found = re.search(r"PreciseBN recalibration recovers (\d+)% of that gap", result.paragraph)
    assert int(found.group(1)) == round(100 * 0.04 / deficit)
    assert "EMA 85.0%, PreciseBN 89.0%, batch statistics 90.0%" in result.paragraph


def test_a_significant_win_over_one_alternative_is_not_called_no_difference():
    from synthetic_records import grid

    means = grid(
        {
            "bn": {2: 0.97, 16: 0.97},
            "gn": {2: 0.969, 16: 0.969},  # within noise of bn
            "none": {2: 0.80, 16: 0.85},  # far below
        }
    )
    _, comparisons, result = analyse(means)
    assert any(c.significant for c in comparisons)
    assert "No difference" not in result.paragraph
    assert re.search(
        r"bn is significantly better than none at batch size 2 and 16 \(1\d\.\d points",
        result.paragraph,
    )
    assert (
        result.recommendation
        == "Recommendation: keep bn; no alternative beats it significantly here."
    )
