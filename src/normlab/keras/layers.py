"""One converter per supported Keras layer: the layer's config and weights to a PyTorch module.

Weights are read as NumPy arrays (``variable.numpy()``), so any Keras backend works. Keras
kernels are channels-last: Conv2D ``(kh, kw, in / groups, out)`` becomes PyTorch's
``(out, in / groups, kh, kw)``, Dense ``(in, out)`` becomes ``(out, in)``. Normalizations become
normlab's registry layers, so that ``swap_norm`` and the diagnostics find them: Keras
``BatchNormalization`` is ``bn_keras`` (momentum ``m`` is PyTorch's ``1 - m``; eps; the moving
variance updated with the biased batch variance), ``LayerNormalization`` over the last axis is
``ln``, ``GroupNormalization`` is ``gn``. ``center=False`` / ``scale=False`` keep beta at 0 /
gamma at 1 and frozen (``requires_grad=False``), as Keras has no such weight to train.
Regularizers and constraints are not carried over: a normlab study sets its own weight decay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from normlab.models import SeededDropout
from normlab.norms import make_norm

from .modules import (
    ACTIVATIONS,
    GlobalAveragePool,
    KerasAdd,
    KerasConcatenate,
    KerasConv2d,
    KerasDense,
    KerasFlatten,
    KerasPool2d,
    KerasReLU,
    Rescaling,
    ZeroPadding,
)


class Unconvertible(Exception):
    """A supported layer class whose settings the converter cannot reproduce exactly."""


def _array(variable: Any) -> np.ndarray:
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)


def _tensor(variable: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.array(_array(variable)), dtype=dtype)


def activation(name: Any) -> nn.Module | None:
    """The module for a Keras activation name (None for ``linear``)."""
    if name in (None, "linear"):
        return None
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise Unconvertible(
            f"activation {name!r} (supported: linear, {', '.join(sorted(ACTIVATIONS))})"
        )
    return ACTIVATIONS[name]()


def _with_activation(module: nn.Module, name: Any) -> nn.Module:
    act = activation(name)
    return module if act is None else nn.Sequential(module, act)


def _channels_last(config: dict[str, Any]) -> None:
    if config.get("data_format") not in (None, "channels_last"):
        raise Unconvertible(
            f"data_format={config['data_format']!r} (normlab converts channels_last models)"
        )


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(int(v) for v in value)


def _last_axis(layer: Any, axis: Any) -> bool:
    """Whether ``axis`` (an int or a one-element list) is the input's last axis."""
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if len(axes) != 1:
        return False
    if axes[0] == -1:
        return True
    try:
        rank = len(layer.input.shape)
    except Exception:  # a shared layer has no single input: only -1 is known to be last
        return False
    return axes[0] == rank - 1


def conv2d(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    _channels_last(config)
    kernel = _tensor(layer.kernel, dtype).permute(3, 2, 0, 1)
    out_channels, per_group, kh, kw = kernel.shape
    groups = int(config.get("groups", 1) or 1)
    strides, dilation = _pair(config["strides"]), _pair(config.get("dilation_rate", 1))
    padding = config["padding"]
    if padding not in ("same", "valid"):
        raise Unconvertible(f"padding={padding!r}")
    arguments = dict(
        in_channels=per_group * groups,
        out_channels=out_channels,
        kernel_size=(kh, kw),
        stride=strides,
        dilation=dilation,
        groups=groups,
        bias=bool(config.get("use_bias", True)),
    )
    extents = [(k - 1) * d for k, d in zip((kh, kw), dilation, strict=True)]
    if padding == "valid":
        conv: nn.Conv2d = nn.Conv2d(**arguments, padding=0)
    elif strides == (1, 1) and all(e % 2 == 0 for e in extents):
        # Stride 1 and an odd extent: Keras's "same" is symmetric, PyTorch's own padding.
        conv = nn.Conv2d(**arguments, padding=tuple(e // 2 for e in extents))
    else:
        conv = KerasConv2d(**arguments, padding=0)
    conv.to(dtype)
    with torch.no_grad():
        conv.weight.copy_(kernel)
        if conv.bias is not None:
            conv.bias.copy_(_tensor(layer.bias, dtype))
    return _with_activation(conv, config.get("activation"))


def dense(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    kernel = _tensor(layer.kernel, dtype)
    use_bias = bool(config.get("use_bias", True))
    linear = KerasDense(kernel.shape[0], kernel.shape[1], bias=use_bias).to(dtype)
    with torch.no_grad():
        linear.weight.copy_(kernel.T)
        if use_bias:
            linear.bias.copy_(_tensor(layer.bias, dtype))
    return _with_activation(linear, config.get("activation"))


def _affine(norm: nn.Module, layer: Any, center: bool, scale: bool, dtype: torch.dtype) -> None:
    """gamma and beta into ``norm``; an absent one stays at its identity value, frozen."""
    if not (center or scale):
        return
    with torch.no_grad():
        for present, attribute, source in ((scale, "weight", "gamma"), (center, "bias", "beta")):
            parameter = getattr(norm, attribute)
            if present:
                parameter.copy_(_tensor(getattr(layer, source), dtype))
            else:
                parameter.fill_(1.0 if attribute == "weight" else 0.0)
                parameter.requires_grad_(False)


def _statistics_channels(layer: Any) -> int:
    for name in ("moving_mean", "gamma", "beta"):
        value = getattr(layer, name, None)
        if value is not None:
            return int(_array(value).shape[-1])
    raise Unconvertible("no weights to read the channel count from")


def batch_normalization(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    if not _last_axis(layer, config.get("axis", -1)):
        raise Unconvertible(f"axis={config.get('axis')!r} (normlab's BN normalizes channels: -1)")
    for key in ("renorm", "virtual_batch_size", "adjustment"):
        if config.get(key):
            raise Unconvertible(f"{key}={config[key]!r}")
    center, scale = bool(config.get("center", True)), bool(config.get("scale", True))
    channels = int(_array(layer.moving_mean).shape[-1])
    norm = make_norm(
        "bn_keras",
        channels,
        momentum=float(f"{1.0 - float(config.get('momentum', 0.99)):.12g}"),  # 1 - 0.9 = 0.1
        eps=float(config.get("epsilon", 1e-3)),
        affine=center or scale,
    ).to(dtype)
    _affine(norm, layer, center, scale, dtype)
    with torch.no_grad():
        norm.running_mean.copy_(_tensor(layer.moving_mean, dtype))
        norm.running_var.copy_(_tensor(layer.moving_variance, dtype))
    return norm


def layer_normalization(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    if not _last_axis(layer, config.get("axis", -1)):
        raise Unconvertible(
            f"axis={config.get('axis')!r}: normlab's ln normalizes across channels (axis=-1); "
            "other axes have no normlab layer"
        )
    if config.get("rms_scaling"):
        raise Unconvertible("rms_scaling=True")
    center, scale = bool(config.get("center", True)), bool(config.get("scale", True))
    channels = _statistics_channels(layer) if center or scale else _input_channels(layer)
    norm = make_norm(
        "ln", channels, eps=float(config.get("epsilon", 1e-3)), affine=center or scale
    ).to(dtype)
    _affine(norm, layer, center, scale, dtype)
    return norm


def group_normalization(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    if not _last_axis(layer, config.get("axis", -1)):
        raise Unconvertible(f"axis={config.get('axis')!r} (normlab's gn groups channels: -1)")
    center, scale = bool(config.get("center", True)), bool(config.get("scale", True))
    channels = _statistics_channels(layer) if center or scale else _input_channels(layer)
    groups = int(config.get("groups", 32))
    norm = make_norm(
        "gn",
        channels,
        groups=channels if groups == -1 else groups,  # Keras: -1 is one group per channel
        eps=float(config.get("epsilon", 1e-3)),
        affine=center or scale,
    ).to(dtype)
    _affine(norm, layer, center, scale, dtype)
    return norm


def _input_channels(layer: Any) -> int:
    try:
        return int(layer.input.shape[-1])
    except Exception as error:
        raise Unconvertible("cannot read its input's channel count") from error


def pooling(kind: str) -> Callable[[Any, dict[str, Any], torch.dtype], nn.Module]:
    def convert(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
        _channels_last(config)
        pool_size = _pair(config["pool_size"])
        strides = _pair(config.get("strides") or pool_size)
        if config["padding"] not in ("same", "valid"):
            raise Unconvertible(f"padding={config['padding']!r}")
        return KerasPool2d(kind, pool_size, strides, config["padding"] == "same")

    return convert


def global_average_pooling(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    _channels_last(config)
    return GlobalAveragePool(bool(config.get("keepdims", False)))


def flatten(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    _channels_last(config)
    return KerasFlatten()


def dropout(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    if config.get("noise_shape") is not None:
        raise Unconvertible(f"noise_shape={config['noise_shape']!r}")
    # normlab's seeded dropout: a study gives its masks the run's own random stream.
    return SeededDropout(float(config["rate"]))


def zero_padding(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    _channels_last(config)
    padding = config["padding"]
    if isinstance(padding, int):
        (top, bottom), (left, right) = (padding, padding), (padding, padding)
    else:
        rows, columns = padding
        top, bottom = _pair(rows)
        left, right = _pair(columns)
    return ZeroPadding(top, bottom, left, right)


def rescaling(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    values = []
    for key, default in (("scale", 1.0), ("offset", 0.0)):
        value = np.asarray(config.get(key, default), dtype=np.float64)
        if value.ndim > 1:
            raise Unconvertible(f"{key} of shape {value.shape} (a scalar or one per channel)")
        values.append(torch.as_tensor(value, dtype=dtype))
    return Rescaling(*values)


def activation_layer(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    return activation(config["activation"]) or nn.Identity()


def relu(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    max_value = config.get("max_value")
    slope, threshold = float(config.get("negative_slope", 0.0)), float(config.get("threshold", 0.0))
    if max_value is None and slope == 0 and threshold == 0:
        return nn.ReLU()
    return KerasReLU(None if max_value is None else float(max_value), slope, threshold)


def concatenate(layer: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    return KerasConcatenate(int(config.get("axis", -1)))


CONVERTERS: dict[str, Callable[[Any, dict[str, Any], torch.dtype], nn.Module]] = {
    "Activation": activation_layer,
    "Add": lambda layer, config, dtype: KerasAdd(),
    "AveragePooling2D": pooling("average"),
    "BatchNormalization": batch_normalization,
    "Concatenate": concatenate,
    "Conv2D": conv2d,
    "Dense": dense,
    "Dropout": dropout,
    "Flatten": flatten,
    "GlobalAveragePooling2D": global_average_pooling,
    "GroupNormalization": group_normalization,
    "InputLayer": lambda layer, config, dtype: nn.Identity(),
    "LayerNormalization": layer_normalization,
    "MaxPooling2D": pooling("max"),
    "ReLU": relu,
    "Rescaling": rescaling,
    "ZeroPadding2D": zero_padding,
}
"""Keras layer class name -> converter; every other layer is refused."""

SUPPORTED_LAYERS = tuple(CONVERTERS)
"""The Keras layers :func:`~normlab.keras.from_keras` converts."""
