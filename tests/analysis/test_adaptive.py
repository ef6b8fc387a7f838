"""Adaptive comparisons from role-tagged records: tuning seeds select, evaluation seeds judge."""

import numpy as np
import pytest

from normlab.analysis.adaptive import assess_study, open_contexts, resolution, selected_lrs
from normlab.analysis.sequential import SequentialDesign

TEST_EXAMPLES = 500


def record(norm, batch, lr, seed, role, test, val=None, status="done", round_=0):
    return {
        "run_id": f"{norm}-{batch}-{lr}-{seed}-{role}",
        "config": {"norm": norm, "batch_size": batch, "lr": lr, "seed": seed},
        "cell": {"norm": norm, "batch_size": batch},
        "status": status,
        "val_acc": test if val is None else val,
        "test_acc": None if status != "done" else round(test * TEST_EXAMPLES) / TEST_EXAMPLES,
        "test_acc_batch_stats": None,
        "role": role,
        "round": round_,
        "wall_time": 1.0,
    }


def study(means, seeds, *, noise=0.004, tuned_lr=0.03, seed=0):
    """Tuning runs (seeds 1000, 1001) prefer ``tuned_lr`` on validation and have misleading test
    accuracies; evaluation runs (seeds 0..seeds-1, rounds of 3 then 3) are at ``tuned_lr``."""
    generator = np.random.default_rng(seed)
    shared = generator.normal(0.0, noise, size=seeds)
    records = []
    for (norm, batch), accuracy in means.items():
        for lr in (0.01, 0.03, 0.1):
            for tuning_seed in (1000, 1001):
                val = 0.9 if lr == tuned_lr else 0.8
                records.append(record(norm, batch, lr, tuning_seed, "tune", test=0.1, val=val))
        for s in range(seeds):
            test = accuracy + shared[s] + generator.normal(0.0, noise)
            records.append(record(norm, batch, tuned_lr, s, "eval", test, round_=1 + s // 3))
    return records


MEANS = {
    ("bn", 4): 0.85, ("gn", 4): 0.93, ("ln", 4): 0.92,
    ("bn", 128): 0.97, ("gn", 128): 0.97, ("ln", 128): 0.9705,
}  # fmt: skip


def test_lr_is_selected_on_tuning_seeds_only():
    records = study(MEANS, seeds=3, tuned_lr=0.1)
    assert set(selected_lrs(records).values()) == {0.1}


def test_evaluation_seeds_alone_are_compared():
    records = study(MEANS, seeds=6, noise=0.0015)
    assessed = assess_study(records, SequentialDesign(round_seeds=3), "bn")
    assert len(assessed) == 4
    by_key = {(a.context["batch_size"], a.alternative): a for a in assessed}
    gn4 = by_key[(4, "gn")].assessment
    # The tuning runs' test accuracy (0.1) would make every difference 0.
    assert gn4.mean == pytest.approx(-0.08, abs=0.01) and gn4.seeds == 6
    assert gn4.status == "worse"
    assert by_key[(128, "gn")].assessment.status == "equivalent"


def test_the_family_is_every_comparison_of_the_study():
    records = study(MEANS, seeds=6)
    one = assess_study(records, SequentialDesign(round_seeds=3), "bn")[0].assessment
    design = SequentialDesign(round_seeds=3, comparisons=4)
    assert one.detectable == pytest.approx(design.detectable(6, one.sd), rel=1e-12)


def test_open_contexts_are_those_with_an_unresolved_comparison():
    noisy = dict(MEANS)
    noisy[("ln", 128)] = 0.965  # half a point from bn with sd ~0.6: open at 3 seeds
    records = study(noisy, seeds=3)
    design = SequentialDesign(round_seeds=3)
    contexts = open_contexts(records, design, "bn")
    assert {"batch_size": 128} in contexts
    assessed = assess_study(records, design, "bn")
    assert all(a.assessment.seeds == 3 for a in assessed)


def test_a_context_at_max_seeds_is_closed_even_if_unresolved():
    records = study({("bn", 4): 0.9, ("gn", 4): 0.905}, seeds=5, noise=0.02)
    design = SequentialDesign(max_seeds=5, round_seeds=2)
    assessed = assess_study(records, design, "bn")
    assert assessed[0].assessment.status == "unresolved"
    assert open_contexts(records, design, "bn") == []


def test_a_partial_round_is_judged_at_the_last_complete_look():
    # 4 seeds finished of a round that goes to 6: the look at 3 seeds, with seeds 0, 1, 2.
    records = study(MEANS, seeds=4)
    assessed = assess_study(records, SequentialDesign(round_seeds=3), "bn")
    assert all(a.assessment.seeds == 3 and len(a.differences) == 3 for a in assessed)


def test_a_diverged_evaluation_run_counts_as_zero():
    records = study({("bn", 4): 0.9, ("gn", 4): 0.9}, seeds=3, noise=0.0)
    diverged = next(r for r in records if r["role"] == "eval" and r["config"]["norm"] == "gn")
    diverged.update(status="diverged", test_acc=None)
    item = assess_study(records, SequentialDesign(), "bn")[0]
    assert max(item.differences) == pytest.approx(0.9, abs=0.01)


def test_resolution_is_one_test_example():
    records = study(MEANS, seeds=6)
    assert resolution(records) == pytest.approx(1 / TEST_EXAMPLES)
    assert resolution([]) == 0.0


def test_rounds_count_the_seeds_at_the_look_only():
    # Round 2 interrupted: the alternative has 5 seeds, the look is still at 3 (round 1), so
    # the comparison's seeds come from 1 round, not 2.
    from synthetic_records import adaptive_records

    records = adaptive_records({("bn", 4): 0.80, ("gn", 4): 0.90}, rounds=(3, 3))
    records = [
        r
        for r in records
        if not (r["role"] == "eval" and r["cell"]["norm"] == "gn" and r["config"]["seed"] == 5)
    ]
    (item,) = assess_study(records, SequentialDesign(), "bn")
    assert item.assessment.seeds == 3
    assert item.rounds == 1
