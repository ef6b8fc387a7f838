"""``from_keras``: a built Keras model (Sequential or functional) as a PyTorch module.

The graph is read from the model's own description, ``model.get_config()`` (the format Keras
saves models in; Keras 3 and tf.keras 2 differ only in how a node names its inputs), and each
layer is converted by :mod:`.layers`. Every layer is checked before anything is built: one
unsupported layer, or a supported one with a setting that cannot be reproduced, refuses the
whole model in one line, and nothing half-converted is returned.

The converted module takes normlab's NCHW input (the Keras model takes NHWC); its layers are
registered under their Keras names and run in Keras's graph order. The layout is permuted where
element order shows: in ``Flatten``, ``Dense`` on a tensor with spatial axes, and
``Concatenate``'s axis (:mod:`.modules`).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import torch
from torch import nn

from normlab.errors import NormlabError

from .backend import import_keras, is_keras_model
from .layers import CONVERTERS, SUPPORTED_LAYERS, Unconvertible

DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""Keras compute dtypes a converted module reproduces."""


class Step(NamedTuple):
    """One call of one layer: the module's attribute name and the value slots it reads."""

    layer: str
    inputs: tuple[int, ...]


class KerasModel(nn.Module):
    """A converted Keras model: its layers, named as in Keras, called in the graph's order.

    ``forward`` takes (N, C, H, W). Slot 0 holds the input; each step appends its output. The
    modules are looked up by name at every call, so ``swap_norm`` replacing one is seen.
    """

    def __init__(
        self,
        layers: dict[str, nn.Module],
        steps: tuple[Step, ...],
        output: int,
        source: str,
        output_activation: str | None,
    ) -> None:
        super().__init__()
        for name, module in layers.items():
            self.add_module(name, module)
        self.steps = steps
        self.output = output
        self.source = source
        """The Keras model's class and name (``Functional 'writeup'``)."""
        self.output_activation = output_activation
        """The activation applied last (``softmax`` for a Keras classifier ending in one)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = [x]
        for step in self.steps:
            values.append(self._modules[step.layer](*(values[i] for i in step.inputs)))
        return values[self.output]

    def extra_repr(self) -> str:
        return f"source={self.source}"


def from_keras(model: Any) -> KerasModel:
    """Convert a built Keras model (Sequential or functional) into a PyTorch module with the
    same weights and arithmetic, taking NCHW input. Layers: :data:`SUPPORTED_LAYERS`."""
    import_keras()
    if not is_keras_model(model):
        raise NormlabError(f"from_keras: a {type(model).__name__} is not a Keras model")
    kinds = {cls.__name__ for cls in type(model).__mro__}
    if "Sequential" in kinds:
        layers, steps, output = _sequential(model)
    elif "Functional" in kinds:
        layers, steps, output = _functional(model)
    else:
        raise NormlabError(
            f"from_keras: {type(model).__name__} {model.name!r} is a subclassed Keras model "
            "(its call() is Python code); build it as Sequential or functional to convert it"
        )
    _refuse_unsupported(layers)
    dtype = _dtype(layers)
    modules, problems = {}, []
    for name, layer in layers.items():
        config = layer.get_config()
        try:
            modules[_attribute(name)] = CONVERTERS[type(layer).__name__](layer, config, dtype)
        except Unconvertible as reason:
            problems.append(f"{name} ({type(layer).__name__}): {reason}")
    if problems:
        raise NormlabError(f"from_keras: cannot convert exactly: {'; '.join(problems)}")
    last = layers[steps[output - 1].layer] if output > 0 else None
    activation = None if last is None else last.get_config().get("activation")
    return KerasModel(
        modules,
        tuple(Step(_attribute(s.layer), s.inputs) for s in steps),
        output,
        f"{type(model).__name__} {model.name!r}",
        activation if isinstance(activation, str) and activation != "linear" else None,
    )


def _attribute(name: str) -> str:
    """A Keras layer name as a module attribute (PyTorch forbids '.' in it)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name) or "layer"


def _refuse_unsupported(layers: dict[str, Any]) -> None:
    unsupported = [
        f"{name} ({type(layer).__name__})"
        for name, layer in layers.items()
        if type(layer).__name__ not in CONVERTERS
        or type(layer).__module__.split(".")[0] not in ("keras", "tf_keras", "tensorflow")
    ]
    frozen = [name for name, layer in layers.items() if not getattr(layer, "trainable", True)]
    if unsupported:
        raise NormlabError(
            f"from_keras: unsupported Keras layer {', '.join(unsupported)}; supported: "
            f"{', '.join(SUPPORTED_LAYERS)}"
        )
    if frozen:
        raise NormlabError(
            f"from_keras: layer {', '.join(frozen)} is frozen (trainable=False), which normlab "
            "does not convert; set trainable=True"
        )


def _dtype(layers: dict[str, Any]) -> torch.dtype:
    found = {str(getattr(layer, "compute_dtype", "float32")) for layer in layers.values()}
    if len(found) != 1 or next(iter(found)) not in DTYPES:
        raise NormlabError(
            f"from_keras: the model computes in {', '.join(sorted(found))}; normlab converts "
            "float32 (or float64) models"
        )
    return DTYPES[found.pop()]


def _sequential(model: Any) -> tuple[dict[str, Any], list[Step], int]:
    if not model.built:
        raise NormlabError(
            f"from_keras: Sequential {model.name!r} is not built; give it keras.Input(shape) "
            "or call model.build(input_shape) first"
        )
    layers = {layer.name: layer for layer in model.layers}
    steps = [Step(name, (i,)) for i, name in enumerate(layers)]
    return layers, steps, len(steps)


def _functional(model: Any) -> tuple[dict[str, Any], list[Step], int]:
    """Layers and steps of a functional model, read from its config: each (layer, node) is one
    step, ordered so that every step's inputs are computed before it."""
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise NormlabError(
            f"from_keras: {model.name!r} has {len(inputs)} inputs and {len(outputs)} outputs; "
            "normlab converts models with one of each"
        )
    try:
        config = model.get_config()
    except Exception as error:
        raise NormlabError(
            f"from_keras: {model.name!r} cannot describe its graph: {error}"
        ) from None
    entries = {entry["name"]: entry for entry in config["layers"]}
    layers: dict[str, Any] = {}
    steps: list[Step] = []
    slots: dict[tuple[str, int], int] = {}

    def visit(name: str, node_index: int, path: tuple[tuple[str, int], ...]) -> int:
        key = (name, node_index)
        if key in slots:
            return slots[key]
        if key in path:
            raise NormlabError(f"from_keras: {model.name!r} has a cycle through {name!r}")
        entry = entries[name]
        if entry["class_name"] == "InputLayer":
            slots[key] = 0
            return 0
        node = entry["inbound_nodes"][node_index]
        sources = [visit(n, i, (*path, key)) for n, i in _node_inputs(name, node)]
        layers.setdefault(name, model.get_layer(name))
        steps.append(Step(name, tuple(sources)))
        slots[key] = len(steps)
        return slots[key]

    output = visit(*_output_ref(config["output_layers"]), ())
    return layers, steps, output


def _output_ref(output_layers: Any) -> tuple[str, int]:
    # Keras 3 writes one output as ["name", node, tensor]; tf.keras as [["name", node, tensor]].
    ref = output_layers if isinstance(output_layers[0], str) else output_layers[0]
    return ref[0], int(ref[1])


def _node_inputs(name: str, node: Any) -> list[tuple[str, int]]:
    """``(layer name, node index)`` of each input of one inbound node, in call order."""
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        # Keras 3 records `training` for layers that take it, and the model's own `training`
        # (fit's True) overrides it: it says nothing the converted module must keep.
        kwargs = {
            k: v for k, v in node.get("kwargs", {}).items() if v is not None and k != "training"
        }
        if kwargs:
            raise NormlabError(
                f"from_keras: layer {name!r} is called with {', '.join(sorted(kwargs))}, which "
                "normlab does not convert"
            )
        found: list[tuple[str, int]] = []
        _keras_tensors(node.get("args", []), found)
        return found
    # tf.keras 2: [[layer name, node index, tensor index, kwargs], ...]; tf.keras keeps a
    # `training=False` written at the call (a frozen BatchNormalization), which normlab cannot.
    for item in node:
        if item[3:] and item[3]:
            raise NormlabError(
                f"from_keras: layer {name!r} is called with {', '.join(sorted(item[3]))}, which "
                "normlab does not convert (training=False freezes a layer in tf.keras)"
            )
    return [(item[0], int(item[1])) for item in node]


def _keras_tensors(value: Any, found: list[tuple[str, int]]) -> None:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = value["config"]["keras_history"]
            found.append((history[0], int(history[1])))
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _keras_tensors(item, found)
