"""``[study] protocol = "adaptive"``: its keys, their errors, durations, and the study's identity."""

from __future__ import annotations

import pytest

from normlab.analysis.sequential import SequentialDesign
from normlab.errors import NormlabError
from normlab.study import load_spec, spec_from_dict
from normlab.study.plan import expand
from normlab.study.protocol import AdaptiveProtocol, duration_text, parse_duration

ADAPTIVE = {
    "study": {"protocol": "adaptive"},
    "factors": {"norm": ["bn", "gn"], "batch_size": [4, 32]},
}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1h2m3s", 3723), (" 90S ", 90)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(duration_text(seconds)) == seconds  # the text reads back


@pytest.mark.parametrize("text", ["", "30", "m", "30 minutes", "1m1h", "-5m", "0s", "2d"])
def test_bad_durations_name_the_value(text):
    with pytest.raises(NormlabError, match="duration|longer than 0"):
        parse_duration(text)


def test_specs_default_to_the_fixed_protocol_and_keep_their_ids():
    spec = spec_from_dict({"factors": {"norm": ["bn", "gn"]}})
    assert spec.protocol == "fixed" and spec.adaptive is None
    assert "study" not in spec.to_dict()  # a fixed spec's dict (and id) is what it was


def test_adaptive_keys_parse_into_one_frozen_dataclass_with_its_design():
    spec = spec_from_dict(
        {
            **ADAPTIVE,
            "study": {
                "protocol": "adaptive",
                "tuning_seeds": 3,
                "first_round": 4,
                "round_seeds": 2,
                "max_seeds": 10,
                "margin": 0.02,
                "alpha": 0.1,
                "budget": "1h30m",
            },
        }
    )
    adaptive = spec.adaptive
    assert adaptive == AdaptiveProtocol(3, 4, 2, 10, 0.02, 0.1, "1h30m")
    assert adaptive.budget_seconds == 5400
    assert spec.seeds == (1000, 1001, 1002)  # the tuning seeds train the lr grid
    assert adaptive.design() == SequentialDesign(4, 2, 10, 0.1, 0.02, 1)
    assert spec.to_dict()["study"] == {
        "protocol": "adaptive",
        "tuning_seeds": 3,
        "first_round": 4,
        "round_seeds": 2,
        "max_seeds": 10,
        "margin": 0.02,
        "alpha": 0.1,
        "budget": "1h30m",
    }
    with pytest.raises(AttributeError):
        adaptive.budget = "2h"  # frozen


def test_defaults_are_the_designs():
    adaptive = spec_from_dict(ADAPTIVE).adaptive
    design = SequentialDesign()
    assert (adaptive.first_round, adaptive.round_seeds, adaptive.max_seeds) == (
        design.first_round,
        design.round_seeds,
        design.max_seeds,
    )
    assert (adaptive.tuning_seeds, adaptive.budget) == (2, None)


def test_tuning_runs_are_planned_with_the_tuning_seeds_only():
    spec = spec_from_dict(ADAPTIVE)
    runs = expand(spec)
    assert {run.config.seed for run in runs} == {1000, 1001}
    assert {run.role for run in runs} == {"tune"} and {run.round for run in runs} == {0}
    assert len(runs) == len(spec.cells()) * len(spec.lr.learning_rates(4)) * 2


def test_the_budget_is_not_part_of_the_study_id():
    small = spec_from_dict({**ADAPTIVE, "study": {"protocol": "adaptive", "budget": "1m"}})
    large = spec_from_dict({**ADAPTIVE, "study": {"protocol": "adaptive", "budget": "2h"}})
    none = spec_from_dict(ADAPTIVE)
    other = spec_from_dict({**ADAPTIVE, "study": {"protocol": "adaptive", "max_seeds": 9}})
    assert small.study_id == large.study_id == none.study_id != other.study_id


def test_rounds_follow_the_looks():
    adaptive = AdaptiveProtocol(first_round=3, round_seeds=2, max_seeds=8)
    assert adaptive.design().looks() == (3, 5, 7, 8)
    assert [adaptive.round_of(seed) for seed in range(8)] == [1, 1, 1, 2, 2, 3, 3, 4]


@pytest.mark.parametrize(
    ("study", "where", "message"),
    [
        ({"protocol": "sequential"}, "study.protocol", "not one of: fixed, adaptive"),
        ({"budget": "30m"}, "study.budget", 'protocol = "adaptive" only'),
        ({"protocol": "adaptive", "seeds": 5}, "study.seeds", "tuning_seeds"),
        ({"protocol": "adaptive", "budget": "30 minutes"}, "study.budget", "not a duration"),
        ({"protocol": "adaptive", "budget": 30}, "study.budget", "a duration"),
        ({"protocol": "adaptive", "first_round": 2}, "study.first_round", ">= 3"),
        ({"protocol": "adaptive", "tuning_seeds": 0}, "study.tuning_seeds", ">= 1"),
        ({"protocol": "adaptive", "round_seeds": 1.5}, "study.round_seeds", "an integer"),
        ({"protocol": "adaptive", "first_round": 5, "max_seeds": 4}, "study.max_seeds", ">= first"),
        ({"protocol": "adaptive", "max_seeds": 1001}, "study.max_seeds", "<= 1000"),
        ({"protocol": "adaptive", "margin": 1.5}, "study.margin", "between 0 and 1"),
        ({"protocol": "adaptive", "alpha": 0}, "study.alpha", "between 0 and 1"),
    ],
)
def test_bad_protocol_values_name_the_key(study, where, message):
    with pytest.raises(NormlabError, match=message) as error:
        spec_from_dict({**ADAPTIVE, "study": study}, source="mine")
    assert where in str(error.value)


def test_the_adaptive_protocol_needs_a_tuned_lr(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[study]\nprotocol = "adaptive"\n\n[lr]\nmode = "fixed"\nbase_lr = 0.1\n')
    with pytest.raises(NormlabError, match=r's.toml:5: lr.mode: .*needs mode "tuned"'):
        load_spec(path)
