"""Collapse: a run that finished at chance. Here, in ``train``, so that the engine can judge
every finished run (``RunResult.collapsed``) without importing a layer above;
``normlab.diagnostics`` re-exports it for its stability records."""

from __future__ import annotations

import math

from normlab.errors import NormlabError

COLLAPSE_LOSS_TOLERANCE = 0.1
"""A collapsed run's final train loss is within 10% of ln(classes), the loss of a uniform
prediction (2.07 to 2.53 nats for 10 classes): a network that learned anything is far below."""
COLLAPSE_ACCURACY_MARGIN = 0.05
"""... and its train accuracy within 5% of the way from chance to perfect of 1/classes
(0.055 to 0.145 for 10 classes): the last epoch's accuracy over ~1,000 examples of a chance
predictor has a standard deviation near 0.01, so chance stays well inside, and a run that
learned a little is out."""


def collapsed(
    final_train_loss: float,
    train_acc: float,
    num_classes: int,
    loss_tolerance: float = COLLAPSE_LOSS_TOLERANCE,
    accuracy_margin: float = COLLAPSE_ACCURACY_MARGIN,
) -> bool:
    """Whether a finished run ended at chance: ``|loss - ln K| <= loss_tolerance * ln K`` and
    ``|acc - 1/K| <= accuracy_margin * (1 - 1/K)`` (see the constants for the justification)."""
    if num_classes < 2:
        raise NormlabError(f"collapsed: num_classes must be >= 2, got {num_classes}")
    chance_loss, chance_acc = math.log(num_classes), 1.0 / num_classes
    if not math.isfinite(final_train_loss):
        return False  # non-finite is divergence, counted there
    return abs(final_train_loss - chance_loss) <= loss_tolerance * chance_loss and abs(
        train_acc - chance_acc
    ) <= accuracy_margin * (1.0 - chance_acc)
