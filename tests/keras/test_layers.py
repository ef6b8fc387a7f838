"""Each supported Keras layer converted exactly (keras/layers.py, keras/modules.py).

Per layer: a one-layer Keras model (random weights and statistics) against its conversion, in
inference and in one training-mode forward, in float32, Keras's default. (float64 would not be
tighter: Keras 3.15 computes normalizations, Dense and pooling in float32 even for float64 input,
as ``backend.result_type("float64", "float32")`` is float32 there.) Tolerance: see ``assert_same``.
"""

from __future__ import annotations

import numpy as np
import pytest
from keras_helpers import assert_same, converted_output, keras, keras_output, randomize

from normlab.keras import SUPPORTED_LAYERS, from_keras
from normlab.keras.modules import same_padding

layers = keras.layers

CASES = {
    "conv_same_stride1": lambda: layers.Conv2D(5, 3, padding="same"),
    "conv_same_stride2": lambda: layers.Conv2D(5, 3, strides=2, padding="same"),
    "conv_same_even_kernel": lambda: layers.Conv2D(4, 2, padding="same", use_bias=False),
    "conv_same_stride2_even": lambda: layers.Conv2D(4, 4, strides=(2, 1), padding="same"),
    "conv_valid_stride2": lambda: layers.Conv2D(4, 3, strides=2, padding="valid"),
    "conv_dilated_grouped": lambda: layers.Conv2D(6, 3, padding="same", dilation_rate=2, groups=3),
    "conv_relu": lambda: layers.Conv2D(4, 3, padding="same", activation="relu"),
    "batch_norm": lambda: layers.BatchNormalization(),
    "batch_norm_momentum_eps": lambda: layers.BatchNormalization(momentum=0.9, epsilon=1e-5),
    "batch_norm_no_scale": lambda: layers.BatchNormalization(scale=False),
    "batch_norm_no_center_scale": lambda: layers.BatchNormalization(center=False, scale=False),
    "layer_norm": lambda: layers.LayerNormalization(),
    "layer_norm_no_center": lambda: layers.LayerNormalization(center=False, epsilon=1e-5),
    "group_norm": lambda: layers.GroupNormalization(groups=3),
    "group_norm_instance": lambda: layers.GroupNormalization(groups=-1),
    "relu": lambda: layers.ReLU(),
    "relu_capped_leaky": lambda: layers.ReLU(max_value=0.8, negative_slope=0.1),
    "relu_threshold": lambda: layers.ReLU(threshold=0.3, negative_slope=0.2),
    "max_pool_valid": lambda: layers.MaxPooling2D(2),
    "max_pool_same": lambda: layers.MaxPooling2D(3, strides=2, padding="same"),
    "average_pool_valid": lambda: layers.AveragePooling2D(2, strides=1),
    "average_pool_same": lambda: layers.AveragePooling2D(2, padding="same"),
    "global_average_pool": lambda: layers.GlobalAveragePooling2D(),
    "global_average_pool_keepdims": lambda: layers.GlobalAveragePooling2D(keepdims=True),
    "flatten": lambda: layers.Flatten(),
    "dense_on_channels": lambda: layers.Dense(4),
    "dropout": lambda: layers.Dropout(0.5),
    "zero_padding": lambda: layers.ZeroPadding2D(((1, 2), (0, 3))),
    "rescaling": lambda: layers.Rescaling(1 / 255.0, offset=-0.5),
    "rescaling_per_channel": lambda: layers.Rescaling([0.5, 2.0, -1.0]),
}
ACTIVATIONS = ["linear", "relu", "relu6", "sigmoid", "tanh", "softmax", "silu", "gelu", "elu"]
BATCH_STATISTICS = {
    "batch_norm",
    "batch_norm_momentum_eps",
    "batch_norm_no_scale",
    "batch_norm_no_center_scale",
}
"""Their training forward normalizes by the batch, and the moving statistics must move as
Keras's do (momentum, biased variance)."""


def one_layer(layer, shape=(7, 7, 3)):
    inputs = keras.Input(shape, dtype="float32")
    model = keras.Model(inputs, layer(inputs))
    randomize(model)
    return model


def data(shape=(7, 7, 3), seed=1):
    return np.random.default_rng(seed).normal(1.0, 3.0, size=(4, *shape)).astype(np.float32)


@pytest.mark.parametrize("case", CASES)
def test_each_layer_equals_keras_in_inference(case):
    model = one_layer(CASES[case]())
    module = from_keras(model).eval()
    x = data()
    assert_same(converted_output(module, x), keras_output(model, x))


@pytest.mark.parametrize("case", sorted(set(CASES) - {"dropout"}))
def test_one_training_forward_equals_keras_and_moves_statistics_alike(case):
    model = one_layer(CASES[case]())
    module = from_keras(model).train()
    x = data()
    assert_same(converted_output(module, x), keras_output(model, x, training=True))
    keras_layer = model.layers[-1]
    if case in BATCH_STATISTICS:
        norm = next(iter(module.children()))
        for ours, theirs in (
            (norm.running_mean, keras_layer.moving_mean),
            (norm.running_var, keras_layer.moving_variance),
        ):
            assert_same(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_equal_keras(name):
    for layer in (layers.Activation(name), layers.Dense(3, activation=name)):
        model = one_layer(layer, shape=(5,))
        x = np.random.default_rng(2).normal(size=(6, 5)).astype(np.float32)
        module = from_keras(model).eval()
        assert_same(converted_output(module, x), keras_output(model, x))


def test_concatenate_on_channels_and_on_a_spatial_axis():
    inputs = keras.Input((4, 5, 3), dtype="float32")
    a = layers.Conv2D(2, 1)(inputs)
    channels = layers.Concatenate()([inputs, a])
    rows = layers.Concatenate(axis=1)([channels, channels])
    model = keras.Model(inputs, layers.Concatenate(axis=2)([rows, rows]))
    randomize(model)
    x = data((4, 5, 3))
    module = from_keras(model)
    assert_same(converted_output(module, x), keras_output(model, x))


def test_flatten_then_dense_reads_keras_order():
    # The one place the layout shows: Dense's rows are in Keras's (H, W, C) flattening order.
    model = keras.Sequential(
        [keras.Input((3, 4, 2), dtype="float32"), layers.Flatten(), layers.Dense(5)]
    )
    randomize(model)
    x = data((3, 4, 2))
    module = from_keras(model)
    assert_same(converted_output(module, x), keras_output(model, x))


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(7, 3, 1, (1, 1)), (8, 3, 2, (0, 1)), (7, 3, 2, (1, 1)), (6, 2, 1, (0, 1)), (5, 1, 2, (0, 0))],
)
def test_same_padding_puts_the_odd_row_after(size, kernel, stride, expected):
    # TensorFlow's rule: out = ceil(size / stride); the extra padding goes bottom / right.
    assert same_padding(size, kernel, stride) == expected


def test_every_supported_layer_is_tested():
    tested = {"Conv2D", "BatchNormalization", "LayerNormalization", "GroupNormalization"}
    tested |= {"ReLU", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "Flatten"}
    tested |= {"Dense", "Dropout", "ZeroPadding2D", "Rescaling", "Activation", "Concatenate"}
    tested |= {"InputLayer", "Add"}  # every model has an InputLayer; Add: test_convert.py
    assert tested == set(SUPPORTED_LAYERS)
