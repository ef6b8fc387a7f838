"""``normlab run --batch-size/--reference-batch-size/--norms/--budget`` as a study spec."""

from __future__ import annotations

import pytest

from normlab.commands.run_options import question_from
from normlab.errors import NormlabError
from normlab.norms import norm_entry
from normlab.study import default_spec
from normlab.study.question import Question, parse_norms, parse_sizes, reference_batch_size


@pytest.mark.parametrize(("train", "size"), [(1078, 128), (50_000, 128), (200, 16), (10, 2)])
def test_the_reference_batch_size_is_large_and_leaves_eight_steps_per_epoch(train, size):
    assert reference_batch_size(train) == size
    assert size == 2 or train // size >= 8


def test_batch_sizes_and_their_errors():
    assert parse_sizes("4", "--batch-size") == (4,)
    assert parse_sizes("2, 8", "--batch-size") == (2, 8)
    for text, problem in [("four", "'four' is not a batch size"), ("2,2", "repeats"), ("0", "'0'")]:
        with pytest.raises(NormlabError, match=f"--batch-size {text}: {problem}"):
            parse_sizes(text, "--batch-size")


def test_norms_and_the_remedies():
    assert parse_norms("bn,gn,ln") == ("bn", "gn", "ln")
    remedies = parse_norms("remedies")
    assert remedies[0] == "bn" and len(remedies) > 2
    assert all(norm_entry(name).keeps_bn for name in remedies[1:])
    assert parse_norms("gn,remedies,bn")[:2] == ("gn", "gbn")  # bn listed: stays where it is
    with pytest.raises(NormlabError, match="--norms bn,nope: 'nope' is not a norm"):
        parse_norms("bn,nope")
    with pytest.raises(NormlabError, match="at least two norms"):
        parse_norms("bn")


def test_a_bad_budget_names_the_option():
    with pytest.raises(NormlabError, match="--budget '30 minutes' is not a duration"):
        question_from(None, None, None, "30 minutes")


def test_a_batch_size_asks_the_adaptive_protocol_beside_the_reference():
    spec = default_spec(False, None, None, None, None, False, Question(batch_sizes=(4,)))
    assert spec.factors["batch_size"] == (4, 128)  # digits: 1,078 training examples
    assert spec.factors["norm"] == ("bn", "none", "ln", "gn")  # today's four
    assert spec.protocol == "adaptive" and spec.adaptive.budget is None
    assert {seed for seed in spec.seeds} == {1000, 1001}
    assert "batch size 4 (reference 128)" in spec.name


def test_norms_reference_budget_and_quick():
    question = question_from("2,8", 32, "bn,gn", "45s")
    spec = default_spec(True, None, None, None, None, False, question)
    assert spec.factors["batch_size"] == (2, 8, 32) and spec.factors["norm"] == ("bn", "gn")
    assert spec.adaptive.budget_seconds == 45
    assert (spec.adaptive.tuning_seeds, spec.adaptive.max_seeds) == (1, 5)  # quick: smoke size
    larger = default_spec(
        True, None, None, None, None, False, question_from("2,8", 32, "bn,gn", "2h")
    )
    assert larger.study_id == spec.study_id  # the same study: a larger budget resumes it


def test_a_budget_alone_keeps_the_presets_batch_sizes():
    spec = default_spec(True, None, None, None, None, False, Question(budget="5m"))
    assert spec.factors["batch_size"] == (8, 64) and spec.protocol == "adaptive"


def test_norms_alone_keep_the_fixed_protocol():
    spec = default_spec(True, None, None, None, None, False, Question(norms=("bn", "gn")))
    assert spec.protocol == "fixed" and spec.factors["norm"] == ("bn", "gn")


def test_a_reference_without_batch_sizes_is_refused():
    with pytest.raises(NormlabError, match="--reference-batch-size: give --batch-size too"):
        default_spec(True, None, None, None, None, False, Question(reference_batch_size=64))
