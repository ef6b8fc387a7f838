"""Why, not only whether: measurements of what BN does to a model (batch-statistic noise,
inference-statistics gap, dropout variance shift, stability) and the doctor built on them.

Pure functions on (model, data tensors) or on plain records, returning frozen dataclasses with
``to_dict()`` for JSON and the store. Layer: above ``train``; never imports study, analysis,
report or cli.
"""

from .doctor import FIX_KINDS, examine, fix_checkpoint
from .findings import Finding, format_findings
from .gap import Decomposition, GapReport, decompose, inference_gap, precise_copy
from .noise import LayerNoise, NoiseReport, batch_stat_noise
from .setup_checks import WeightDecaySetting
from .stability import (
    LearningRateRange,
    LossRises,
    StabilityReport,
    collapsed,
    divergence_step,
    global_gradient_norm,
    loss_rises,
    stability_report,
    usable_lr_range,
)
from .variance_shift import ShiftedLayer, VarianceShiftReport, variance_shift

__all__ = [
    "FIX_KINDS",
    "Finding",
    "WeightDecaySetting",
    "examine",
    "fix_checkpoint",
    "format_findings",
    "Decomposition",
    "GapReport",
    "LayerNoise",
    "LearningRateRange",
    "LossRises",
    "NoiseReport",
    "ShiftedLayer",
    "StabilityReport",
    "VarianceShiftReport",
    "batch_stat_noise",
    "collapsed",
    "decompose",
    "divergence_step",
    "global_gradient_norm",
    "inference_gap",
    "loss_rises",
    "precise_copy",
    "stability_report",
    "usable_lr_range",
    "variance_shift",
]
