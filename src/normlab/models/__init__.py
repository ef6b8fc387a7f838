"""Models whose normalization is a parameter: the write-up's seed block, a ResNet of them, the
normalization-free variants (Fixup, SkipInit) chosen by ``init``, He et al.'s CIFAR ResNets and
a pre-activation ResNet-18, and the registry that names them."""

from .blocks import DROPOUT_POSITIONS, FixupBlock, ScalarBias, SeedBlock, SkipInitBlock, seed_block
from .cifar_resnet import (
    BasicBlock,
    CifarResNet,
    ShortcutA,
    cifar_resnet,
    resnet20,
    resnet32,
    resnet56,
)
from .dropout import SeededDropout, dropout_generator, seed_dropout
from .init import (
    INIT_DESCRIPTIONS,
    INITS,
    check_init,
    fixup_branch_scale,
    fixup_scalars,
    initialize_fixup,
)
from .preact import PreActBlock, PreActResNet, preact_resnet18
from .registry import (
    MODELS,
    ModelEntry,
    build_builtin_model,
    describe_models,
    model_entry,
    model_names,
    model_options,
    register_model,
)
from .resnet import ResNet, resnet

MODEL_DESCRIPTIONS = {name: entry.description for name, entry in MODELS.items()}
"""Name -> one-line description of the built-in models (a snapshot of :data:`MODELS`)."""

__all__ = [
    "DROPOUT_POSITIONS",
    "INITS",
    "INIT_DESCRIPTIONS",
    "MODELS",
    "MODEL_DESCRIPTIONS",
    "BasicBlock",
    "CifarResNet",
    "FixupBlock",
    "ModelEntry",
    "PreActBlock",
    "PreActResNet",
    "ResNet",
    "ScalarBias",
    "SeededDropout",
    "SeedBlock",
    "ShortcutA",
    "SkipInitBlock",
    "build_builtin_model",
    "check_init",
    "cifar_resnet",
    "describe_models",
    "dropout_generator",
    "fixup_branch_scale",
    "fixup_scalars",
    "initialize_fixup",
    "model_entry",
    "model_names",
    "model_options",
    "preact_resnet18",
    "register_model",
    "resnet",
    "resnet20",
    "resnet32",
    "resnet56",
    "seed_block",
    "seed_dropout",
]
