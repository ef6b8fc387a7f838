"""Models whose normalization is a parameter: the write-up's seed block, a ResNet of them, and
the normalization-free variants (Fixup, SkipInit) chosen by ``init``."""

from .blocks import DROPOUT_POSITIONS, FixupBlock, ScalarBias, SeedBlock, SkipInitBlock, seed_block
from .dropout import SeededDropout, dropout_generator, seed_dropout
from .init import (
    INIT_DESCRIPTIONS,
    INITS,
    check_init,
    fixup_branch_scale,
    fixup_scalars,
    initialize_fixup,
)
from .resnet import ResNet, resnet

MODEL_DESCRIPTIONS = {
    "resnet": "stem conv + stages of the write-up's seed blocks + global average pool + linear",
    "seed_block": "the write-up's post-activation block: conv-norm-ReLU-conv-norm-add-ReLU",
}

__all__ = [
    "DROPOUT_POSITIONS",
    "INITS",
    "INIT_DESCRIPTIONS",
    "MODEL_DESCRIPTIONS",
    "FixupBlock",
    "ResNet",
    "ScalarBias",
    "SeededDropout",
    "SeedBlock",
    "SkipInitBlock",
    "check_init",
    "dropout_generator",
    "fixup_branch_scale",
    "fixup_scalars",
    "initialize_fixup",
    "resnet",
    "seed_block",
    "seed_dropout",
]
