import math

import numpy as np
import pytest

from normlab.diagnostics import (
    collapsed,
    divergence_step,
    loss_spikes,
    stability_report,
    usable_lr_range,
)
from normlab.errors import NormlabError


def _curve_with_spikes() -> tuple[list[float], list[int]]:
    # A falling loss with 15% multiplicative noise, and spikes of x3 at known steps (one of
    # them three steps long: one spike).
    rng = np.random.default_rng(0)
    steps = np.arange(300)
    losses = (2.3 * np.exp(-steps / 80) + 0.1) * (1 + 0.15 * rng.uniform(-1, 1, steps.size))
    spike_starts = [40, 95, 180, 250]
    for start in spike_starts:
        length = 3 if start == 180 else 1
        losses[start : start + length] *= 3.0
    return losses.tolist(), spike_starts


def test_spikes_found_exactly():
    losses, spike_starts = _curve_with_spikes()
    assert loss_spikes(losses) == tuple(spike_starts)
    assert loss_spikes(losses, factor=4.0) == ()  # x3 spikes stay under 4 x the median


def test_spikes_skip_non_finite_and_validate():
    assert loss_spikes([1.0] * 25 + [math.nan, 1.0, 5.0]) == (27,)
    with pytest.raises(NormlabError, match="factor"):
        loss_spikes([1.0], factor=1.0)


def test_divergence_and_collapse():
    assert divergence_step([2.0, 1.0, math.inf], 10) == 2
    assert divergence_step([2.0, 1000.0], 10) == 1  # above 100 x ln 10 = 230
    assert divergence_step([2.0, 1.0], 10) is None
    chance = math.log(10)
    assert collapsed(chance, 0.1, 10)
    assert collapsed(chance * 1.05, 0.12, 10)
    assert not collapsed(chance, 0.3, 10)  # accuracy far above chance
    assert collapsed(5.0, 0.1, 10)  # at chance with a high loss: judged by accuracy alone
    assert not collapsed(math.nan, 0.1, 10)
    assert collapsed(math.log(2), 0.5, 2) and not collapsed(math.log(2), 0.6, 2)


def test_stability_report():
    losses, spike_starts = _curve_with_spikes()
    report = stability_report(
        losses, [1.0, 3.0, math.nan], 10, final_train_loss=0.2, train_acc=0.95
    )
    assert report.spikes == len(spike_starts)
    assert report.grad_norm_mean == pytest.approx(2.0)
    assert report.grad_norm_variance == pytest.approx(1.0)
    assert report.diverged_at is None and not report.collapsed
    at_chance = stability_report([2.3] * 30, [], 10, final_train_loss=2.3, train_acc=0.1)
    assert at_chance.collapsed and at_chance.grad_norm_mean is None
    assert at_chance.to_dict()["collapsed"] is True
    # 2 classes, 1,000 examples, 0.53: 1.9 standard errors from chance, outside the old fixed
    # +-0.025 but inside the binomial band.
    two = stability_report([2.0] * 30, [], 2, final_train_loss=2.0, train_acc=0.53)
    assert not two.collapsed
    two = stability_report(
        [2.0] * 30, [], 2, final_train_loss=2.0, train_acc=0.53, train_examples=1000
    )
    assert two.collapsed


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
