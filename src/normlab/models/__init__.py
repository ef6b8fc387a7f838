"""Models whose normalization is a parameter: the write-up's seed block and a ResNet of them."""

from .blocks import DROPOUT_POSITIONS, SeedBlock, seed_block
from .resnet import ResNet, resnet

MODEL_DESCRIPTIONS = {
    "resnet": "stem conv + stages of the write-up's seed blocks + global average pool + linear",
    "seed_block": "the write-up's post-activation block: conv-norm-ReLU-conv-norm-add-ReLU",
}

__all__ = [
    "DROPOUT_POSITIONS",
    "MODEL_DESCRIPTIONS",
    "ResNet",
    "SeedBlock",
    "resnet",
    "seed_block",
]
