"""Registry of built-in models: one dict from name to builder, like the norms' registry.

Every builder has the signature ``build(*, num_classes, in_channels, norm, norm_options,
**options)`` and returns an ``nn.Module`` whose normalization layers are ``make_norm(norm, C,
**norm_options)``. ``normlab list models`` shows :func:`describe_models`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from normlab.errors import NormlabError

from .cifar_resnet import resnet20, resnet32, resnet56
from .preact import preact_resnet18
from .resnet import resnet


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one model."""

    name: str
    build: Callable[..., nn.Module]
    """``build(*, num_classes, in_channels, norm, norm_options, **options)`` returns the model."""
    description: str
    """One line for ``normlab list models``."""
    input_shape: str
    """Input the model is made for, as ``"CxHxW"`` (e.g. ``"3x32x32"``); the channel count also
    builds the model that :func:`describe_models` counts."""


MODELS: dict[str, ModelEntry] = {}
"""Built-in (and user-registered) models by name, in registration order."""

BUILD_ARGUMENTS = ("num_classes", "in_channels", "norm", "norm_options")
"""Keyword arguments every builder takes; everything else is a model option."""


def register_model(entry: ModelEntry, *, replace: bool = False) -> None:
    """Add a model to :data:`MODELS`; a taken name is refused unless ``replace``."""
    if entry.name in MODELS and not replace:
        raise NormlabError(
            f"model {entry.name!r} is already registered; pass replace=True to redefine it"
        )
    if ":" in entry.name:
        raise NormlabError(f"model name {entry.name!r} must not contain ':' (that marks a factory)")
    input_channels(entry.input_shape)  # a malformed shape fails here, not in `normlab list`
    MODELS[entry.name] = entry


def model_names() -> list[str]:
    """Every registered model name, in registration order."""
    return list(MODELS)


def model_entry(name: str) -> ModelEntry:
    """The entry of ``name``; a :class:`NormlabError` listing the valid names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise NormlabError(
            f"unknown model {name!r}; valid names: {', '.join(model_names())}"
        ) from None


def model_options(name: str) -> tuple[str, ...]:
    """The options (beyond :data:`BUILD_ARGUMENTS`) that model ``name`` takes."""
    parameters = inspect.signature(model_entry(name).build).parameters
    return tuple(p for p in parameters if p not in BUILD_ARGUMENTS)


def build_builtin_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    norm: str,
    norm_options: Mapping[str, object] | None = None,
    **options: object,
) -> nn.Module:
    """Build the registered model ``name`` with normalization ``norm``.

    An option the model does not take is a :class:`NormlabError` naming it and the valid ones.
    """
    entry = model_entry(name)
    parameters = inspect.signature(entry.build).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        valid = model_options(name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise NormlabError(
                f"model {name!r} does not take option {unknown[0]!r}; "
                f"it takes: {', '.join(valid) or 'no options'}"
            )
    return entry.build(
        num_classes=num_classes,
        in_channels=in_channels,
        norm=norm,
        norm_options=dict(norm_options or {}),
        **options,
    )


def input_channels(input_shape: str) -> int:
    """The channel count of an ``"CxHxW"`` input shape."""
    parts = input_shape.split("x")
    if len(parts) != 3 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise NormlabError(f"input shape {input_shape!r} is not 'CxHxW' (e.g. '3x32x32')")
    return int(parts[0])


def describe_models() -> list[tuple[str, str, int, str]]:
    """(name, input shape, parameter count with ``bn`` and 10 classes, description) per model."""
    return [
        (entry.name, entry.input_shape, parameter_count(entry), entry.description)
        for entry in MODELS.values()
    ]


def parameter_count(entry: ModelEntry, norm: str = "bn", num_classes: int = 10) -> int:
    """Parameters of ``entry`` built for its input shape; the global RNG is left as it was.

    (Building on the meta device was tried: its one-off setup costs ~2 s, more than building
    every built-in on the CPU, ~0.25 s, ResNet-18 included.)
    """
    with torch.random.fork_rng(devices=[]):
        model = entry.build(
            num_classes=num_classes,
            in_channels=input_channels(entry.input_shape),
            norm=norm,
            norm_options={},
        )
    return sum(parameter.numel() for parameter in model.parameters())


def _seed_resnet(
    *,
    num_classes: int,
    in_channels: int,
    norm: str,
    norm_options: Mapping[str, object],
    depth: int = 8,
    widths: Sequence[int] = (16, 32, 64),
    dropout: float = 0.0,
    dropout_position: str = "head",
    init: str = "default",
) -> nn.Module:
    return resnet(
        norm=norm,
        depth=depth,
        widths=widths,
        num_classes=num_classes,
        in_channels=in_channels,
        dropout=dropout,
        dropout_position=dropout_position,
        norm_options=norm_options,
        init=init,
    )


register_model(
    ModelEntry(
        "resnet",
        _seed_resnet,
        "ResNet of the write-up's seed blocks (docs/WRITEUP.md), any input size (options depth, widths, "
        "dropout, dropout_position, init)",
        "1x8x8",
    )
)
for _depth, _build in ((20, resnet20), (32, resnet32), (56, resnet56)):
    register_model(
        ModelEntry(
            f"resnet{_depth}",
            _build,
            f"He et al. 2016 CIFAR ResNet-{_depth}: 16/32/64 channels, option A shortcuts",
            "3x32x32",
        )
    )
register_model(
    ModelEntry(
        "preact_resnet18",
        preact_resnet18,
        "He et al. 2016 pre-activation ResNet-18, CIFAR variant (3x3 stem, no pool)",
        "3x32x32",
    )
)
