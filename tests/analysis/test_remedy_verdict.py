"""The verdict names the best remedy that keeps BN where BN loses (synthetic records)."""

from synthetic_records import grid, study_records

from normlab.analysis.compare import cell_statistics, compare_cells
from normlab.analysis.remedies import keeps_bn
from normlab.analysis.summary import cell_key
from normlab.analysis.verdict import verdict


def paragraph(means, gaps_for=None):
    cells = cell_statistics(study_records(means))
    gaps = {}
    if gaps_for is not None:
        base = next(c for c in cells if c.label == "bn" and c.context == {"batch_size": 2})
        gaps = {cell_key(base.summary.cell): gaps_for}
    result = verdict(cells, compare_cells(cells, "bn"), "norm", "bn", gaps=gaps)
    return result.paragraph, result.recommendation


def test_registry_flags_decide_the_candidates():
    assert keeps_bn("mabn") and keeps_bn("evalnorm") and keeps_bn("brn") and keeps_bn("cbn")
    assert keeps_bn("mabn(momentum=0.98)")  # a label with scoped options
    assert not keeps_bn("cbn_naive")  # an ablation is never a remedy
    assert not keeps_bn("bn") and not keeps_bn("gn") and not keeps_bn("no-such-norm")


def test_a_remedy_within_noise_of_the_best_alternative_is_offered():
    means = grid(
        {
            "bn": {2: 0.85, 32: 0.97},
            "gn": {2: 0.93, 32: 0.96},
            "mabn": {2: 0.927, 32: 0.97},
            "evalnorm": {2: 0.88, 32: 0.97},
            "cbn_naive": {2: 0.929, 32: 0.97},
        }
    )
    text, recommendation = paragraph(means)
    assert "The best remedy there that keeps BN, mabn, is within noise of gn (mabn - gn = " in text
    assert "cbn_naive" not in recommendation and "evalnorm" not in recommendation
    assert "at batch size 2 use gn, or keep BN with mabn, within noise of it" in recommendation


def test_no_remedy_close_enough_says_so_and_names_the_closest():
    means = grid(
        {
            "bn": {2: 0.85, 32: 0.97},
            "gn": {2: 0.93, 32: 0.96},
            "mabn": {2: 0.88, 32: 0.97},
            "evalnorm": {2: 0.86, 32: 0.97},
        }
    )
    text, recommendation = paragraph(means)
    assert "No remedy that keeps BN comes within noise of gn there (the closest, mabn: " in text
    assert "keep BN with" not in recommendation and "at batch size 2 use gn" in recommendation


def test_precise_bn_of_the_baselines_own_runs_is_a_candidate():
    means = grid({"bn": {2: 0.85, 32: 0.97}, "gn": {2: 0.93, 32: 0.96}})
    gaps = {s: {"running_acc": 0.85, "precise_acc": 0.93, "batch_acc": 0.9} for s in range(5)}
    text, recommendation = paragraph(means, gaps_for=gaps)
    assert "The best remedy there that keeps BN, bn + PreciseBN, is within noise of gn" in text
    assert "or keep BN with bn + PreciseBN" in recommendation


def test_a_remedy_that_is_the_best_alternative_is_recommended_as_keeping_bn():
    means = grid(
        {"bn": {2: 0.85, 32: 0.97}, "gn": {2: 0.90, 32: 0.96}, "mabn": {2: 0.93, 32: 0.97}}
    )
    text, recommendation = paragraph(means)
    assert "at batch size 2 use mabn (it keeps BN)" in recommendation
    assert "remedy" not in text  # the best alternative already keeps BN: nothing more to name


def test_other_factors_get_no_remedy_sentence():
    means = grid(
        {"bn": {2: 0.85, 32: 0.97}, "gn": {2: 0.93, 32: 0.96}, "mabn": {2: 0.927, 32: 0.97}}
    )
    cells = cell_statistics(study_records(means))
    result = verdict(cells, compare_cells(cells, "bn"), "dropout", "bn")
    assert "remedy" not in result.paragraph and "keep BN with" not in result.recommendation
