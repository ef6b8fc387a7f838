"""What every diagnostic needs from a model: its batch-statistics layers, and a mode switch that
puts every training flag back afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.norms import FrozenBatchNorm


def batch_norm_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """Every layer that normalizes with batch statistics in training mode, with its first name.

    Any ``torch.nn.modules.batchnorm._BatchNorm`` found by ``named_modules`` (``BatchNorm1d/2d/3d``,
    ``SyncBatchNorm``, normlab's ``bn``, ``bn_keras``, ``gbn``, ``brn``) except ``frozen_bn``,
    whose statistics are fixed: it has no batch statistics to be noisy or shifted.
    """
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm) and not isinstance(module, FrozenBatchNorm)
    ]


@contextmanager
def training_flags_restored(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block that changes training flags; every module's flag is restored on exit."""
    flags = {module: module.training for module in model.modules()}
    try:
        yield model
    finally:
        for module, flag in flags.items():
            module.training = flag
