"""Normalization layers, one family per file, and the registry that names them.

``norms`` imports nothing else of normlab: it is the bottom layer that models, surgery and users
build on.
"""

from .batch import BatchNorm, batch_norm, batch_norm_keras
from .batch_group import BatchGroupNorm, batch_group_norm
from .cross_iteration import (
    CrossIterationBatchNorm,
    cross_iteration_batch_norm,
    naive_cross_iteration_batch_norm,
)
from .errors import NormlabError
from .evalnorm import EvalNorm, eval_norm
from .evonorm import EvoNormB0, EvoNormS0, evonorm_b0, evonorm_s0
from .frozen import FrozenBatchNorm, frozen_batch_norm
from .ghost import GhostBatchNorm, ghost_batch_norm
from .group import group_norm, instance_norm, layer_norm_chw
from .identity import NoNorm, no_norm
from .layer import ChannelLayerNorm, layer_norm_keras
from .moving_average import MovingAverageBatchNorm, moving_average_batch_norm
from .packed import (
    PACKINGS,
    PackedChannelLayerNorm,
    pack_norm,
    packing_problem,
    stack_layers,
    unstack_into,
)
from .registry import (
    NormEntry,
    make_norm,
    norm_entry,
    norm_names,
    register,
    uses_batch_statistics,
)
from .renorm import BatchRenorm, batch_renorm, set_renormalization
from .response import FilterResponseNorm, filter_response_norm
from .weight_std import CenteredConv2d, WSConv2d, centralize_weight, standardize_weight

register(
    NormEntry(
        "bn",
        batch_norm,
        "Ioffe & Szegedy 2015 (PyTorch defaults)",
        True,
        running_momentum=True,
        packing="channel",
    )
)
register(
    NormEntry(
        "bn_keras",
        batch_norm_keras,
        "Ioffe & Szegedy 2015 (Keras defaults)",
        True,
        running_momentum=True,
        packing="channel",
    )
)
register(
    NormEntry("none", no_norm, "no normalization", False, train_equals_eval=True, packing="channel")
)
register(
    NormEntry(
        "ln",
        layer_norm_keras,
        "Ba et al. 2016 (Keras, per position)",
        False,
        train_equals_eval=True,
        packing="position",
    )
)
register(
    NormEntry(
        "ln_chw",
        layer_norm_chw,
        "Ba et al. 2016 (over C,H,W)",
        False,
        train_equals_eval=True,
        packing="group",
    )
)
register(
    NormEntry("gn", group_norm, "Wu & He 2018", False, train_equals_eval=True, packing="group")
)
register(
    NormEntry(
        "in",
        instance_norm,
        "Ulyanov et al. 2016 (InstanceNorm, affine)",
        False,
        train_equals_eval=True,
        packing="group",
    )
)
register(
    NormEntry(
        "gbn",
        ghost_batch_norm,
        "Hoffer et al. 2017 (Ghost BatchNorm)",
        True,
        running_momentum=True,
        keeps_bn=True,
        packing="channel",
    )
)
register(
    NormEntry(
        "brn",
        batch_renorm,
        "Ioffe 2017 (Batch Renormalization)",
        True,
        running_momentum=True,
        keeps_bn=True,
        packing="channel",
    )
)
register(
    NormEntry(
        "frozen_bn",
        frozen_batch_norm,
        "Ioffe & Szegedy 2015 (frozen statistics)",
        False,
        # Running statistics, but fixed: the same transform in training and inference.
        train_equals_eval=True,
        packing="channel",
    )
)
register(
    NormEntry(
        "frn",
        filter_response_norm,
        "Singh & Krishnan 2020 (FRN + TLU)",
        False,
        train_equals_eval=True,
        packing="channel",
    )
)
register(
    NormEntry(
        "evonorm_s0",
        evonorm_s0,
        "Liu et al. 2020 (EvoNorm-S0)",
        False,
        train_equals_eval=True,
        packing="group",
    )
)
register(
    NormEntry(
        "evonorm_b0",
        evonorm_b0,
        "Liu et al. 2020 (EvoNorm-B0)",
        True,
        running_momentum=True,
        packing="channel",
    )
)
register(
    NormEntry(
        "gn_ws",
        group_norm,
        "Wu & He 2018 + Qiao et al. 2019 (GroupNorm + Weight Standardization)",
        False,
        weight_standardized_conv=True,
        train_equals_eval=True,
        packing="group",
    )
)
register(
    NormEntry(
        "bgn",
        batch_group_norm,
        "Summers & Dinneen 2020 (batch + group norm)",
        True,
        running_momentum=True,
        packing="group",
    )
)
register(
    NormEntry(
        "mabn",
        moving_average_batch_norm,
        "Yan et al. 2020 (Moving Average BN)",
        True,
        running_momentum=True,
        keeps_bn=True,
        centered_conv=True,
        packing="channel",
        vmap_problem="its backward is a custom autograd.Function without the setup_context functorch needs",
    )
)
register(
    NormEntry(
        "cbn",
        cross_iteration_batch_norm,
        "Yao et al. 2021 (Cross-Iteration BN)",
        True,
        running_momentum=True,
        keeps_bn=True,
        packing="channel",
        vmap_problem="it keeps past batch statistics as Python state across steps and differentiates the graph inside its forward",
    )
)
register(
    NormEntry(
        "cbn_naive",
        naive_cross_iteration_batch_norm,
        "Yao et al. 2021 (Cross-Iteration BN window without compensation)",
        True,
        running_momentum=True,
        keeps_bn=True,
        ablation=True,
        packing="channel",
        vmap_problem="it keeps past batch statistics as Python state across steps",
    )
)
register(
    NormEntry(
        "evalnorm",
        eval_norm,
        "Singh & Shrivastava 2019 (EvalNorm)",
        True,
        running_momentum=True,
        keeps_bn=True,
        packing="channel",
    )
)

__all__ = [
    "PACKINGS",
    "BatchGroupNorm",
    "BatchNorm",
    "BatchRenorm",
    "ChannelLayerNorm",
    "CrossIterationBatchNorm",
    "EvalNorm",
    "EvoNormB0",
    "EvoNormS0",
    "FilterResponseNorm",
    "FrozenBatchNorm",
    "GhostBatchNorm",
    "MovingAverageBatchNorm",
    "NoNorm",
    "NormEntry",
    "NormlabError",
    "PackedChannelLayerNorm",
    "WSConv2d",
    "CenteredConv2d",
    "centralize_weight",
    "make_norm",
    "norm_entry",
    "norm_names",
    "pack_norm",
    "packing_problem",
    "register",
    "set_renormalization",
    "stack_layers",
    "standardize_weight",
    "unstack_into",
    "uses_batch_statistics",
]
