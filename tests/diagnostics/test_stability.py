import math

import numpy as np
import pytest

from normlab.data import synthetic
from normlab.diagnostics import (
    collapsed,
    divergence_step,
    loss_rises,
    stability_report,
    usable_lr_range,
)
from normlab.diagnostics.stability import MIN_WINDOW_STEPS, RISE_THRESHOLD
from normlab.errors import NormlabError
from normlab.train import RunConfig, optim, train_run


def noisy_losses(
    rng: np.random.Generator,
    batch_size: int,
    steps: int,
    error_rate: float,
    bump: tuple[int, int, float] | None = None,
) -> np.ndarray:
    """Per-batch cross-entropy-like losses with only the noise of sampling a batch: each
    example is misclassified (loss ~ 0.7 + Exp(2.5)) with a probability that falls from
    5 x ``error_rate`` to ``error_rate``, else fitted (loss ~ Exp(0.02)); a batch's loss is its
    examples' mean. ``bump = (start, stop, factor)`` multiplies the error rate over those steps:
    a planted instability (the loss climbs back up, then recovers)."""
    t = np.arange(steps)
    rate = error_rate * (1 + 4 * np.exp(-t / (steps / 5)))
    if bump is not None:
        rate[bump[0] : bump[1]] = np.minimum(rate[bump[0] : bump[1]] * bump[2], 0.9)
    wrong = rng.random((steps, batch_size)) < rate[:, None]
    losses = np.where(
        wrong,
        rng.exponential(2.5, (steps, batch_size)) + 0.7,
        rng.exponential(0.02, (steps, batch_size)),
    )
    return losses.mean(axis=1)


EXAMPLES = 1078 * 6
"""Examples a run sees: the default study's six epochs over digits' 1,078 training examples."""


def test_pure_batch_noise_scores_zero_at_every_batch_size_and_loss_level():
    # The old count (a step above 2 x the median of the 20 before it) found hundreds of
    # "spikes" per run at batch 2 and none at 128 on the same kind of curve: it counted the
    # noise of a batch of two. The rise statistic measures a window's mean against its own
    # standard error, so noise alone, at any batch size, error rate (loss level) and scale,
    # never rises: 0 in every one of 6 x 3 x 2 x 5 = 180 simulated runs (a simulation of 1,800
    # such runs had its largest rise at z = 4.6, under the threshold of 5).
    rng = np.random.default_rng(0)
    for batch_size in (2, 4, 8, 16, 32, 128):
        for error_rate in (0.3, 0.03, 0.003):
            for scale in (1.0, 40.0):
                for _ in range(5):
                    losses = scale * noisy_losses(
                        rng, batch_size, EXAMPLES // batch_size, error_rate
                    )
                    rises = loss_rises(losses.tolist())
                    assert rises.instability == 0.0, (batch_size, error_rate, scale, rises)
                    assert rises.max_rise < RISE_THRESHOLD


def test_rise_is_independent_of_the_loss_scale_and_level():
    rng = np.random.default_rng(1)
    losses = noisy_losses(rng, 4, 1000, 0.05, bump=(500, 600, 6.0))
    plain = loss_rises(losses.tolist())
    moved = loss_rises((7.0 * losses + 3.0).tolist())
    assert moved.instability == plain.instability and moved.excursion_steps == plain.excursion_steps
    # Welch's z is invariant under an affine map up to rounding of the means (float64).
    assert moved.max_rise == pytest.approx(plain.max_rise, rel=1e-9)


def test_planted_excursions_are_found_where_they_are():
    rng = np.random.default_rng(2)
    for batch_size in (2, 8, 32):
        steps = EXAMPLES // batch_size
        start, stop = int(0.5 * steps), int(0.6 * steps)  # a tenth of the run
        losses = noisy_losses(rng, batch_size, steps, 0.02, bump=(start, stop, 25.0))
        rises = loss_rises(losses.tolist())
        window = rises.window_steps
        assert len(rises.excursion_steps) == 1, (batch_size, rises)
        # Found in the window holding the bump's start (or the next, when the bump covers
        # only the end of that window) and nowhere else: a tenth of the run is 3 of the
        # 29 judged windows, give or take the two partly covered ones.
        assert start - window <= rises.excursion_steps[0] <= start + window, rises
        assert 2 / 29 <= rises.instability <= 4 / 29, rises


def test_a_short_run_resolves_excursions_of_two_windows():
    # Batch 128: 50 steps, windows of MIN_WINDOW_STEPS = 8. A bump shorter than a window is
    # averaged with the steps around it (the limit of the resolution); one of 16 steps is found.
    rng = np.random.default_rng(5)
    losses = noisy_losses(rng, 128, EXAMPLES // 128, 0.02, bump=(24, 40, 25.0))
    rises = loss_rises(losses.tolist())
    assert rises.window_steps == MIN_WINDOW_STEPS and len(rises.excursion_steps) == 1, rises
    assert 16 <= rises.excursion_steps[0] <= 32


def test_a_slow_climb_is_found_against_the_best_so_far():
    # No window is far above the one before it, but the last third sits far above the best.
    rng = np.random.default_rng(3)
    steps = 2000
    losses = noisy_losses(rng, 8, steps, 0.02)
    losses[steps // 2 :] += np.linspace(0.0, 0.5, steps - steps // 2)
    rises = loss_rises(losses.tolist())
    assert rises.instability > 0.25 and rises.max_rise > 2 * RISE_THRESHOLD


def _trained_losses(config: RunConfig, data) -> list[float]:
    seen: dict = {}

    def keep_trace(config, model, dataset, trace):
        seen["losses"] = trace.step_losses
        return {}

    assert train_run(config, data, after_training=keep_trace).status == "done"
    return seen["losses"]


def test_real_training_stable_at_batch_two_scores_zero_and_a_planted_lr_burst_is_found(
    monkeypatch,
):
    # 120 training examples at batch 2 for 3 epochs: 180 steps, 22 windows of 8. The stable
    # run fits its data (train accuracy 1.0 here) with a per-batch loss that jumps between ~0
    # and ~2 near the end, which the old count called spikes; its largest rise is z ~ 1.7.
    # The planted run is the same run with the learning rate multiplied by 30 over steps
    # 90..109 (the schedule's factor patched): its loss climbs from ~0.5 back above chance
    # (z ~ 11 measured). Both margins to the threshold of 5 are wide against kernel-level
    # differences between machines.
    data = synthetic(num_examples=200, num_classes=4, size=8, noise=0.3, seed=0)
    config = RunConfig(
        dataset="synthetic",
        dataset_options={"num_examples": 200, "num_classes": 4, "size": 8, "noise": 0.3},
        depth=8,
        widths=(4, 8, 8),
        batch_size=2,
        lr=0.01,
        epochs=3,
    )
    stable = loss_rises(_trained_losses(config, data))
    assert stable.instability == 0.0 and stable.max_rise < RISE_THRESHOLD, stable
    factor = optim.learning_rate_factor

    def burst(schedule: str, step: int, total_steps: int) -> float:
        return factor(schedule, step, total_steps) * (30.0 if 90 <= step < 110 else 1.0)

    monkeypatch.setattr(optim, "learning_rate_factor", burst)
    planted = loss_rises(_trained_losses(config, data))
    assert planted.instability > 0.2 and planted.max_rise > 2 * RISE_THRESHOLD, planted
    assert 90 <= planted.excursion_steps[0] <= 90 + 4 * planted.window_steps, planted


def test_rises_skip_the_divergent_tail_and_validate():
    assert loss_rises([1.0] * 10).instability is None  # too short for two windows
    rises = loss_rises([1.0] * 40 + [2.0] * 40 + [math.nan, 1e9])
    assert rises.excursion_steps == (40,) and rises.max_rise == math.inf
    assert rises.instability == pytest.approx(5 / 9)  # 10 windows of 8: 5 of the 9 judged
    with pytest.raises(NormlabError, match="threshold"):
        loss_rises([1.0], threshold=0.0)


def test_divergence_and_collapse():
    assert divergence_step([2.0, 1.0, math.inf], 10) == 2
    assert divergence_step([2.0, 1000.0], 10) == 1  # above 100 x ln 10 = 230
    assert divergence_step([2.0, 1.0], 10) is None
    chance = math.log(10)
    assert collapsed(chance, 0.1, 10)
    assert collapsed(chance * 1.05, 0.12, 10)
    assert not collapsed(chance, 0.3, 10)  # accuracy far above chance
    assert not collapsed(1.2, 0.1, 10)  # loss far below ln 10
    assert not collapsed(math.nan, 0.1, 10)
    assert collapsed(math.log(2), 0.5, 2) and not collapsed(math.log(2), 0.6, 2)


def test_stability_report():
    rng = np.random.default_rng(4)
    losses = noisy_losses(rng, 4, 1000, 0.05, bump=(500, 600, 6.0)).tolist()
    report = stability_report(
        losses, [1.0, 3.0, math.nan], 10, final_train_loss=0.2, train_acc=0.95
    )
    assert report.instability == loss_rises(losses).instability > 0
    assert report.excursion_steps == loss_rises(losses).excursion_steps
    assert report.grad_norm_mean == pytest.approx(2.0)
    assert report.grad_norm_variance == pytest.approx(1.0)
    assert report.diverged_at is None and not report.collapsed
    at_chance = stability_report([2.3] * 30, [], 10, final_train_loss=2.3, train_acc=0.1)
    assert at_chance.collapsed and at_chance.grad_norm_mean is None
    assert at_chance.to_dict()["collapsed"] is True
    assert at_chance.to_dict()["instability"] == 0.0  # a flat loss never rises


def _records(norm, batch_size, accuracies_by_lr, seeds=2):
    return [
        {"norm": norm, "batch_size": batch_size, "lr": lr, "val_acc": acc, "seed": seed}
        for lr, acc in accuracies_by_lr.items()
        for seed in range(seeds)
    ]


def test_usable_lr_range():
    records = _records("bn", 8, {0.001: 0.80, 0.01: 0.95, 0.1: 0.96, 1.0: 0.955, 10.0: 0.5})
    records += _records("gn", 8, {0.001: 0.95, 0.01: 0.70, 0.1: 0.96, 1.0: 0.2})
    records.append({"norm": "gn", "batch_size": 8, "lr": 1.0, "val_acc": None, "seed": 2})
    ranges = usable_lr_range(records, margin=0.015)
    bn = ranges[("bn", 8)]
    assert (bn.low, bn.high, bn.best_lr) == (0.01, 1.0, 0.1)
    assert bn.decades == pytest.approx(2.0)
    gn = ranges[("gn", 8)]
    # 0.001 and 0.1 both qualify but are not contiguous: one point each, the best one wins.
    assert (gn.low, gn.high, gn.decades) == (0.1, 0.1, 0.0)
    assert gn.grid == (0.001, 0.01, 0.1, 1.0)
