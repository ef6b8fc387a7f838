"""Collapse: a run that finished at chance. Here, in ``train``, so that the engine can judge
every finished run (``RunResult.collapsed``) without importing a layer above;
``normlab.diagnostics`` re-exports it for its stability records.

A run is judged by its accuracy against chance, not by its loss: a run stuck at chance can sit
at any loss between ln(classes) and the divergence threshold (a confidently wrong constant
prediction has a loss far above ln K), and such a run is neither learned nor diverged. The
accuracy of a chance predictor over n examples is Binomial(n, 1/K) / n, so the band around
1/K that a run at chance falls into scales with n: a fixed margin is too wide for large sets
and too narrow for 2 classes (+-0.025 missed 11% of chance-level runs over 1,000 examples).
"""

from __future__ import annotations

import math

from normlab.errors import NormlabError

COLLAPSE_BAND_Z = 3.29
"""The band is chance +- 3.29 binomial standard errors: two-sided, a run at chance falls outside
it once in a thousand (normal approximation; the test simulates it for 2 and 10 classes). Over
1,000 examples of 10 classes that is 0.069 to 0.131; of 2 classes, 0.448 to 0.552."""
COLLAPSE_ACCURACY_MARGIN = 0.05
"""Without the number of examples behind the accuracy: within 5% of the way from chance to
perfect of 1/classes (0.055 to 0.145 for 10 classes), about the binomial band of ~1,000
examples."""


def chance_band(num_classes: int, num_examples: int, z: float = COLLAPSE_BAND_Z) -> float:
    """Half-width of the band around 1/K holding the accuracy of a chance predictor over
    ``num_examples`` examples: ``z * sqrt(p (1 - p) / n)`` with ``p = 1/K``."""
    if num_classes < 2:
        raise NormlabError(f"chance_band: num_classes must be >= 2, got {num_classes}")
    if num_examples < 1:
        raise NormlabError(f"chance_band: num_examples must be >= 1, got {num_examples}")
    chance = 1.0 / num_classes
    return z * math.sqrt(chance * (1.0 - chance) / num_examples)


def collapsed(
    final_train_loss: float,
    train_acc: float,
    num_classes: int,
    num_examples: int | None = None,
    accuracy_margin: float = COLLAPSE_ACCURACY_MARGIN,
) -> bool:
    """Whether a finished run ended at chance: its train accuracy (over ``num_examples``, the
    last epoch's examples) within :func:`chance_band` of 1/K, whatever its loss. Without
    ``num_examples``, within ``accuracy_margin * (1 - 1/K)`` of 1/K. A non-finite loss is not a
    collapse (it is divergence, counted there); otherwise the loss plays no part (module
    docstring)."""
    if num_classes < 2:
        raise NormlabError(f"collapsed: num_classes must be >= 2, got {num_classes}")
    if not math.isfinite(final_train_loss):
        return False  # non-finite is divergence, counted there
    chance = 1.0 / num_classes
    if num_examples is None:
        band = accuracy_margin * (1.0 - chance)
    else:
        band = chance_band(num_classes, num_examples)
    return abs(train_acc - chance) <= band
