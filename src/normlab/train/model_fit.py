"""Whether a model fits a dataset: one probe forward pass before anything trains.

A factory that ignores ``in_channels`` (a 3-channel network on 1-channel digits) or
``num_classes`` would otherwise fail deep inside training with PyTorch's shape error and a long
traceback. :func:`check_model_fits` feeds two training examples through a copy of the model in
eval mode (running statistics, dropout off: nothing of the model changes, and a layer that sees
1x1 activations works) and turns a failure into one :class:`NormlabError` line that says what
the model expects, what the data has, and what fixes it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from normlab.data import Dataset
from normlab.errors import NormlabError

PROBE_EXAMPLES = 2
"""Examples of the probe batch (two, so that any layer that insists on a batch works)."""


def _first_layer_hooks(
    model: nn.Module, seen: list[tuple[str, nn.Module]]
) -> list[torch.utils.hooks.RemovableHandle]:
    """Hooks that record, in call order, each module that declares the input width it takes
    (``in_channels``: convolutions; ``in_features``: linear layers)."""
    return [
        module.register_forward_pre_hook(
            lambda module, args, name=name: seen.append((name, module))
        )
        for name, module in model.named_modules()
        if hasattr(module, "in_channels") or hasattr(module, "in_features")
    ]


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def _failure(
    ref: str,
    seen: list[tuple[str, nn.Module]],
    dataset: Dataset,
    data: str,
    data_option: str,
    error: Exception,
) -> str:
    """The message for a probe that raised: the first layer's expected width against the data
    when that is what failed (the common case), else the error itself and where it happened."""
    channels, height, width = dataset.input_shape
    if len(seen) == 1:  # it failed in (or right after) the first layer that takes the input
        name, layer = seen[0]
        where = f"its first layer, {name or 'the model'}: {type(layer).__name__}"
        expected = getattr(layer, "in_channels", None)
        if expected is not None and expected != channels:
            return (
                f"model {ref!r} expects {_plural(expected, 'input channel')} ({where}) but "
                f"{data}, {_plural(channels, 'channel')}: give {data_option} a dataset with "
                f"{_plural(expected, 'channel')}, or let the factory take in_channels "
                f"(normlab passes {channels})"
            )
        features = getattr(layer, "in_features", None)
        if features is not None and features != channels * height * width:
            return (
                f"model {ref!r} expects {_plural(features, 'input value')} per example "
                f"({where}) but {data}, {channels * height * width} values: give "
                f"{data_option} a dataset of that size, or build the model for the data's "
                "shape (the factory may take in_channels)"
            )
    place = seen[-1][0] if seen else ""
    return (
        f"model {ref!r} fails on a batch of the data {dataset.name} "
        f"({channels}x{height}x{width} images){f' in {place}' if place else ''}: "
        f"{_one_line(error)}"
    )


def check_model_fits(
    model: nn.Module, dataset: Dataset, ref: str, *, data_option: str = "--data"
) -> None:
    """Refuse ``model`` (built from ``ref``) unless a batch of ``dataset``'s training inputs
    goes through it and gives one score per class.

    ``data_option`` names where the user chooses the data (``--data`` on the command line,
    ``[run] dataset`` in a spec), for the fix the message suggests. ``model`` is not changed
    (the probe runs on a copy).
    """
    channels, height, width = dataset.input_shape
    data = f"the data {dataset.name} has {channels}x{height}x{width} images"
    probe = copy.deepcopy(model).eval()
    seen: list[tuple[str, nn.Module]] = []
    hooks = _first_layer_hooks(probe, seen)
    inputs = dataset.x_train[:PROBE_EXAMPLES].to(next(probe.parameters(), torch.empty(0)).device)
    try:
        with torch.no_grad():
            output = probe(inputs)
    except Exception as error:  # the user's forward failed: say why in one line
        raise NormlabError(_failure(ref, seen, dataset, data, data_option, error)) from None
    finally:
        for hook in hooks:
            hook.remove()
    if not isinstance(output, torch.Tensor):
        raise NormlabError(
            f"model {ref!r} returns a {type(output).__name__}; normlab trains models that "
            "return one tensor of class scores (N, num_classes)"
        )
    expected_shape = (len(inputs), dataset.num_classes)
    if tuple(output.shape) != expected_shape:
        raise NormlabError(
            f"model {ref!r} gives outputs of shape {tuple(output.shape)} for {len(inputs)} "
            f"examples, but {data} in {dataset.num_classes} classes (expected "
            f"{expected_shape}): let the factory take num_classes (normlab passes "
            f"{dataset.num_classes})"
        )
