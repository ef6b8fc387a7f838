"""Registry of normalization layers: one dict from name to constructor, timm-style.

``make_norm(name, num_channels, **options)`` builds a layer for inputs shaped (N, C, *spatial).
Adding a normalization is one class in a family file, one ``register`` line in
``norms/__init__.py`` (where every entry is registered), one test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .errors import NormlabError


@dataclass(frozen=True)
class NormEntry:
    """What the registry knows about one normalization."""

    name: str
    build: Callable[..., nn.Module]
    """``build(num_channels, **options)`` returns the layer."""
    citation: str
    """Paper (or library) that defines the method, shown by ``normlab list norms``."""
    batch_statistics: bool
    """True when training-mode outputs depend on other samples of the mini-batch."""
    weight_standardized_conv: bool = False
    """True when the preceding convolution must use Weight Standardization (``gn_ws``)."""
    centered_conv: bool = False
    """True when the preceding convolution must centralize its filters (``mabn``: the paper's
    ``CenConv2d``, :class:`~normlab.norms.CenteredConv2d`)."""
    running_momentum: bool = False
    """True when the layer updates running statistics with a ``momentum`` option (PyTorch
    convention: the weight of the new batch statistic), which ``RunConfig.bn_momentum`` sets.
    ``frozen_bn`` keeps running statistics but never updates them: False."""
    train_equals_eval: bool = False
    """True when the training-mode forward computes exactly the eval-mode forward (no batch
    statistics, no running statistics used or updated in training, no noise), so evaluating in
    training mode changes nothing. False, the safe default, unless that is known."""
    keeps_bn: bool = False
    """True for a remedy for BN at small batch that keeps BN's place in the architecture and a
    per-channel affine inference transform (brn, gbn, mabn, cbn, cbn_naive, evalnorm): the
    candidates when the verdict names "the best remedy that keeps BN" (but not an
    ``ablation``). BN itself is False."""
    ablation: bool = False
    """True for an entry that exists to measure a part of another method (``cbn_naive``: CBN
    without its compensation): studies may include it, the verdict never recommends it."""
    packing: str | None = None
    """How K runs' layers become one layer of a packed model (``norms/packed.py``), or None
    when the layer cannot be packed exactly (its runs then train one by one): ``channel``
    (statistics and parameters per channel, or per sample and channel: the same layer over
    K*C channels), ``group`` (per group of channels: K*G groups over K*C channels) or
    ``position`` (each position across one run's channels: Keras layer normalization)."""
    vmap_problem: str | None = None
    """Why K runs' layers cannot run as one under ``torch.vmap`` with stacked parameters and
    buffers (the general packer, ``train/packed_func.py``, for architectures other than the
    write-up's ResNet), or None when they can exactly. Such a norm trains alone there."""


_REGISTRY: dict[str, NormEntry] = {}


def register(entry: NormEntry) -> None:
    """Add a normalization to the registry (names are unique)."""
    if entry.name in _REGISTRY:
        raise ValueError(f"normalization {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry


def norm_names() -> list[str]:
    """Every registered normalization name, in registration order."""
    return list(_REGISTRY)


def norm_entry(name: str) -> NormEntry:
    """The registry entry for ``name``; a :class:`NormlabError` listing valid names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(norm_names())
        raise NormlabError(f"unknown normalization {name!r}; valid names: {valid}") from None


def uses_batch_statistics(name: str) -> bool:
    """Whether the named normalization computes statistics across the mini-batch in training."""
    return norm_entry(name).batch_statistics


def make_norm(name: str, num_channels: int, **options: object) -> nn.Module:
    """Build the normalization ``name`` for ``num_channels`` channels.

    Options are forwarded to the layer (e.g. ``groups`` for ``gn``, ``momentum`` for ``bn``);
    an option the layer does not take is a :class:`NormlabError` naming it.
    """
    entry = norm_entry(name)
    if num_channels < 1:
        raise NormlabError(f"{name}: num_channels must be positive, got {num_channels}")
    try:
        return entry.build(num_channels, **options)
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            raise NormlabError(f"normalization {name!r} does not take option: {error}") from None
        raise
