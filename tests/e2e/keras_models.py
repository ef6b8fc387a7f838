"""A small Keras model as a user writes one, for tests/e2e/test_cli_keras.py
(``keras_models.py:tiny_writeup``): the write-up's BN block at 4 filters, behind a stem."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from keras import Input, Model, layers  # noqa: E402


def tiny_writeup(num_classes, input_shape):
    inputs = Input(shape=input_shape)
    x = layers.Conv2D(4, 3, padding="same")(inputs)
    shortcut = x
    x = layers.Conv2D(4, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(4, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Add()([shortcut, x])
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return Model(inputs, layers.Dense(num_classes)(x))
