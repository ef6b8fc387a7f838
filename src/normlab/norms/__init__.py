"""Normalization layers, one family per file, and the registry that names them.

``norms`` imports nothing else of normlab: it is the bottom layer that models, surgery and users
build on.
"""

from .batch import BatchNorm, batch_norm, batch_norm_keras
from .errors import NormlabError
from .group import group_norm, layer_norm_chw
from .identity import NoNorm, no_norm
from .layer import ChannelLayerNorm, layer_norm_keras
from .registry import (
    NormEntry,
    make_norm,
    norm_entry,
    norm_names,
    register,
    uses_batch_statistics,
)

register(NormEntry("bn", batch_norm, "Ioffe & Szegedy 2015 (PyTorch defaults)", True))
register(NormEntry("bn_keras", batch_norm_keras, "Ioffe & Szegedy 2015 (Keras defaults)", True))
register(NormEntry("none", no_norm, "no normalization", False))
register(NormEntry("ln", layer_norm_keras, "Ba et al. 2016 (Keras, per position)", False))
register(NormEntry("ln_chw", layer_norm_chw, "Ba et al. 2016 (over C,H,W)", False))
register(NormEntry("gn", group_norm, "Wu & He 2018", False))

__all__ = [
    "BatchNorm",
    "ChannelLayerNorm",
    "NoNorm",
    "NormEntry",
    "NormlabError",
    "make_norm",
    "norm_entry",
    "norm_names",
    "register",
    "uses_batch_statistics",
]
