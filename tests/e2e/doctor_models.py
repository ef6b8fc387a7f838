"""Small model factories for the ``diagnose`` / ``doctor`` end-to-end tests, referenced as
``tests/e2e/doctor_models.py:<factory>``; each planted with one problem the doctor must find,
and a healthy one. Inputs are digits' 1x8x8 images."""

from torch import nn


def healthy(num_classes, in_channels):
    """conv-BN-ReLU x 2, global pool, linear: nothing wrong once trained and calibrated."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def slow_statistics(num_classes, in_channels):
    """Running statistics with momentum 0.001: a horizon of 1,000 steps, ~30 epochs of digits."""
    model = healthy(num_classes, in_channels)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.001
    return model


def frozen_but_updating(num_classes, in_channels):
    """BN parameters frozen (requires_grad False) but the layers left in training mode."""
    model = healthy(num_classes, in_channels)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.requires_grad_(False)
    return model.train()


def sync_batch_norm(num_classes, in_channels):
    """SyncBatchNorm on a CPU machine with no process group."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(healthy(num_classes, in_channels))


def pooled_bn(num_classes, in_channels):
    """BN after global pooling: one value per example and channel, noisy at small batches (and a
    batch of one fails in training mode)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.BatchNorm1d(8),
        nn.Linear(8, num_classes),
    )


def dropout_before_bn(num_classes, in_channels):
    """Dropout(0.5) right before a BN: its input variance shrinks at inference."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.Dropout(0.5),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )
