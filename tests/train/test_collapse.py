"""Collapse is judged by accuracy against chance, with a binomial band for the set's size."""

import math

import numpy as np
import pytest

from normlab.errors import NormlabError
from normlab.train.collapse import collapsed


def test_a_run_at_chance_with_a_high_loss_is_collapsed():
    # The demonstration: loss 5.0 (above 1.1 ln 10, below the divergence threshold),
    # accuracy exactly chance. It was neither collapsed nor diverged.
    assert collapsed(5.0, 0.10, 10)
    assert collapsed(5.0, 0.10, 10, 1000)
    assert collapsed(3.0 * math.log(2), 0.52, 2, 1000)


def test_learned_and_non_finite_runs_are_not_collapsed():
    assert not collapsed(0.5, 0.9, 10, 1000)
    assert not collapsed(math.nan, 0.1, 10, 1000)
    assert not collapsed(math.inf, 0.1, 10)
    assert not collapsed(2.3, 0.2, 10, 1000)  # 10 standard errors above chance


def test_band_is_binomial():
    from normlab.train.collapse import COLLAPSE_BAND_Z, chance_band

    assert chance_band(10, 1000) == pytest.approx(COLLAPSE_BAND_Z * math.sqrt(0.09 / 1000))
    assert chance_band(2, 1000) == pytest.approx(COLLAPSE_BAND_Z * 0.5 / math.sqrt(1000))
    with pytest.raises(NormlabError, match="num_examples"):
        chance_band(10, 0)
    with pytest.raises(NormlabError, match="num_classes"):
        collapsed(2.0, 0.5, 1)


@pytest.mark.parametrize("num_classes", [2, 10])
@pytest.mark.parametrize("num_examples", [200, 1000])
def test_runs_at_chance_are_caught_and_learned_ones_are_not(num_classes, num_examples):
    """Simulated accuracies of a chance predictor (Binomial(n, 1/K) / n) fall in the band
    99.9% of the time by construction (z = 3.29); with 20,000 draws the miss rate's standard
    error is 0.0002, so <= 0.003 allows the normal approximation's error at n = 200 plus five
    standard errors. The old rule's fixed +-0.025 for 2 classes missed about 11% at n = 1,000."""
    rng = np.random.default_rng(0)
    chance = 1.0 / num_classes
    draws = rng.binomial(num_examples, chance, size=20_000) / num_examples
    missed = np.mean([not collapsed(5.0, float(a), num_classes, num_examples) for a in draws])
    assert missed <= 0.003
    # A run 8 standard errors (at chance) above chance is judged not collapsed nearly always:
    # with its own, wider binomial spread it falls back inside the band with probability
    # below 0.1% in all four cases (worst: 10 classes, n = 200, P(Z < -3.2)).
    learned = chance + 8.0 * math.sqrt(chance * (1 - chance) / num_examples)
    draws = rng.binomial(num_examples, learned, size=20_000) / num_examples
    judged = np.mean([collapsed(0.5, float(a), num_classes, num_examples) for a in draws])
    assert judged <= 0.01
