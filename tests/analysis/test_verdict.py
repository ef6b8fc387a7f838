"""Verdict sentences say what the data say, for three synthetic result sets."""

import re

import numpy as np
from scipy import stats as scipy_stats
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
    assert "Holm-adjusted CI" in text and "Holm p" in text
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


def test_too_few_seeds_says_there_is_no_ci_and_no_test():
    _, comparisons, result = analyse(BN_WORSE_SMALL, seeds=2)
    assert all(c.ci is None and c.p_holm is None for c in comparisons)
    assert not any(c.significant for c in comparisons)
    assert "no confidence intervals and no tests" in result.paragraph
    assert "no CI: fewer than 3 seeds" in result.paragraph
    assert "significantly" not in result.paragraph.replace("none of them significant", "")
    assert result.recommendation.startswith("Recommendation: none yet: with fewer than 3 seeds")


def test_gap_decomposition_is_the_paired_precise_bn_minus_ema_difference():
    # Before: "PreciseBN recalibration recovers 47% of that gap", a ratio of unpaired means with
    # no interval (it can exceed 100% or go negative).
    records = study_records(BN_WORSE_SMALL)
    cells = cell_statistics(records)
    base = next(c for c in cells if c.label == "bn" and c.context == {"batch_size": 2})
    ema = [0.85, 0.86, 0.84, 0.85, 0.85]
    precise = [0.89, 0.91, 0.88, 0.89, 0.88]
    gaps = {
        cell_key(base.summary.cell): {
            s: {"running_acc": ema[s], "precise_acc": precise[s], "batch_acc": 0.9}
            for s in range(5)
        }
    }
    result = verdict(cells, compare_cells(cells, "bn"), "norm", "bn", gaps=gaps)
    assert "recovers" not in result.paragraph
    differences = np.subtract(precise, ema)
    ci = scipy_stats.ttest_1samp(differences, 0.0).confidence_interval(0.95)
    assert (
        f"changes its accuracy by {100 * differences.mean():+.1f} points (PreciseBN - EMA, paired "
        f"over 5 seeds, 95% CI {100 * ci.low:.1f} to {100 * ci.high:.1f}; EMA 85.0%, "
        "PreciseBN 89.0%, batch statistics 90.0%)"
    ) in result.paragraph


def test_printed_effect_size_has_the_sign_of_its_sentence():
    # Before: "3.0 points below gn (..., d_z = -3.8)": d_z of bn - gn beside a gap stated as
    # gn - bn.
    _, comparisons, result = analyse(BN_WORSE_SMALL)
    found = re.search(
        r"batch size 2, bn's test accuracy is [\d.]+ points below gn [^)]*d_z = (-?[\d.]+)",
        result.paragraph,
    )
    assert float(found.group(1)) > 0


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
