"""Whole models converted (keras/convert.py): the write-up's three blocks, graphs, refusals."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from keras_helpers import assert_same, converted_output, keras, keras_output, randomize
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.errors import NormlabError
from normlab.keras import INSTALL_HINT, SUPPORTED_LAYERS, from_keras, is_keras_model
from normlab.norms import BatchNorm, ChannelLayerNorm
from normlab.surgery import swap_norm
from normlab.train.model_ref import resolve_factory

layers = keras.layers
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "keras_writeup.py"
BLOCKS = ("bn_model", "no_norm_model", "ln_model")


def writeup(factory: str, filters: int = 16):
    """A write-up model from examples/keras_writeup.py, random weights and statistics."""
    model = resolve_factory(f"{EXAMPLE}:{factory}")(
        num_classes=5, input_shape=(8, 8, 3), filters=filters
    )
    randomize(model)
    return model


def images(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(6, 8, 8, 3)).astype(np.float32)


@pytest.mark.parametrize("factory", BLOCKS)
def test_writeup_blocks_equal_keras_in_inference(factory):
    model = writeup(factory)
    module = from_keras(model).eval()
    x = images()
    assert_same(converted_output(module, x), keras_output(model, x))


@pytest.mark.parametrize("factory", BLOCKS)
def test_writeup_blocks_train_as_keras_does(factory):
    # One training-mode forward: the same outputs, and BN's moving statistics moved alike.
    model = writeup(factory)
    module = from_keras(model).train()
    x = images(1)
    assert_same(converted_output(module, x), keras_output(model, x, training=True))
    ours = [m for m in module.modules() if isinstance(m, BatchNorm)]
    theirs = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    assert len(ours) == len(theirs) == (2 if factory == "bn_model" else 0)
    for norm, layer in zip(ours, theirs, strict=True):
        assert_same(norm.running_mean.numpy(), layer.moving_mean.numpy())
        assert_same(norm.running_var.numpy(), layer.moving_variance.numpy())


def test_writeup_layers_become_normlab_norms_with_keras_parameter_counts():
    bn, ln = from_keras(writeup("bn_model", 64)), from_keras(writeup("ln_model", 64))
    norms = [m for m in bn.modules() if isinstance(m, _BatchNorm)]
    assert all(isinstance(m, BatchNorm) and m.biased_running_var for m in norms)
    assert [(m.momentum, m.eps) for m in norms] == [(0.01, 1e-3)] * 2  # Keras's 0.99, 1e-3
    assert len([m for m in ln.modules() if isinstance(m, ChannelLayerNorm)]) == 2
    keras_model = writeup("bn_model", 64)
    trainable = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    assert sum(p.numel() for p in bn.parameters()) == trainable


def test_a_swapped_norm_is_seen_by_forward():
    # Layers are looked up by name at each call: swap_norm's replacement is the one that runs.
    module = from_keras(writeup("bn_model"))
    calls = []
    swap_norm(module, "ln")
    assert not [m for m in module.modules() if isinstance(m, _BatchNorm)]
    for norm in (m for m in module.modules() if isinstance(m, ChannelLayerNorm)):
        norm.register_forward_hook(lambda *args: calls.append(1))
    module(torch.zeros(2, 3, 8, 8))
    assert len(calls) == 2


def test_sequential_and_a_shared_layer():
    shared = layers.Conv2D(3, 3, padding="same")
    inputs = keras.Input((6, 6, 3))
    x = shared(shared(inputs))  # one layer, two calls: one module called twice
    functional = keras.Model(inputs, layers.Add()([x, inputs]))
    sequential = keras.Sequential(
        [keras.Input((6, 6, 3)), layers.Conv2D(4, 3), layers.GlobalAveragePooling2D()]
    )
    for model in (functional, sequential):
        randomize(model)
        x = images()[:, :6, :6]
        assert_same(converted_output(from_keras(model), x), keras_output(model, x))


def test_an_unsupported_layer_is_refused_in_one_line_naming_it_and_the_supported_set():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3)(inputs)
    x = layers.DepthwiseConv2D(3)(x)
    model = keras.Model(inputs, layers.Flatten()(x))
    with pytest.raises(NormlabError) as caught:
        from_keras(model)
    message = str(caught.value)
    assert "\n" not in message
    assert "depthwise_conv2d (DepthwiseConv2D)" in message
    assert all(name in message for name in SUPPORTED_LAYERS)


@pytest.mark.parametrize(
    ("layer", "named"),
    [
        (lambda: layers.LayerNormalization(axis=[1, 2, 3]), "axis"),
        (lambda: layers.BatchNormalization(axis=1), "axis"),
        (lambda: layers.Conv2D(2, 3, padding="same", activation="softplus"), "softplus"),
        (lambda: layers.Dropout(0.5, noise_shape=(None, 1, 1, 3)), "noise_shape"),
    ],
)
def test_settings_that_cannot_be_converted_exactly_are_refused(layer, named):
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, layer()(inputs))
    with pytest.raises(NormlabError, match=f"cannot convert exactly: .*{named}"):
        from_keras(model)


def test_a_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = layers.Conv2D(2, 3)

        def call(self, x):
            return self.conv(x)

    with pytest.raises(NormlabError, match="subclassed Keras model"):
        from_keras(Net())


def test_recognizes_keras_models_by_class_without_importing_keras():
    assert is_keras_model(writeup("bn_model"))
    assert not is_keras_model(torch.nn.Conv2d(1, 1, 1)) and not is_keras_model("keras")


def test_keras_missing_names_the_extra(monkeypatch):
    # sys.modules[name] = None makes `import keras` raise ImportError, as when it is absent.
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(NormlabError, match=re.escape(f"Keras models need Keras 3: {INSTALL_HINT}")):
        from_keras(object())


def test_a_tf_keras_model_converts_where_tensorflow_is_installed():
    tf = pytest.importorskip("tensorflow")
    tf_layers = tf.keras.layers
    inputs = tf.keras.Input((6, 6, 3))
    x = tf_layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    x = tf_layers.BatchNormalization()(x)
    x = tf_layers.Activation("relu")(x)
    model = tf.keras.Model(inputs, tf_layers.Dense(3)(tf_layers.Flatten()(x)))
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(0.5, 1.5, size=w.shape) for w in model.get_weights()])
    x = images()[:, :6, :6]
    expected = np.asarray(model(x, training=False))
    assert_same(converted_output(from_keras(model).eval(), x), expected)
