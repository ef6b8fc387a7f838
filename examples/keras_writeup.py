"""The write-up's three residual blocks in Keras, as it writes them, and models that use them.

`Conv2D(bias on) -> Norm -> ReLU -> Conv2D(bias on) -> Norm -> Add(shortcut) -> ReLU`, with
BatchNormalization, with no normalization and with LayerNormalization (docs/WRITEUP.md). The
one change is the fix its usage example needs: a stem convolution, so that the 64-channel block
does not add a 3-channel input. Each model ends in logits (normlab trains with cross-entropy).

    normlab run --model examples/keras_writeup.py:bn_model

converts `bn_model` (Keras 3 on its PyTorch backend: `pip install normlab[keras]`) and runs the
default study on it: its BatchNormalization layers are the baseline (`bn`), and each other norm
of the study replaces them. `none` and `ln` then give the write-up's other two blocks exactly;
`no_norm_model` and `ln_model` build those blocks in Keras directly.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # normlab sets it too; this file also runs alone

from keras import Input, Model, layers  # noqa: E402


def residual_block_bn(x, filters, kernel_size=3):
    shortcut = x
    x = layers.Conv2D(filters, kernel_size, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(filters, kernel_size, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Add()([shortcut, x])
    x = layers.Activation("relu")(x)
    return x


def residual_block_no_norm(x, filters, kernel_size=3):
    shortcut = x
    x = layers.Conv2D(filters, kernel_size, padding="same")(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(filters, kernel_size, padding="same")(x)
    x = layers.Add()([shortcut, x])
    x = layers.Activation("relu")(x)
    return x


def residual_block_ln(x, filters, kernel_size=3):
    shortcut = x
    x = layers.Conv2D(filters, kernel_size, padding="same")(x)
    x = layers.LayerNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(filters, kernel_size, padding="same")(x)
    x = layers.LayerNormalization()(x)
    x = layers.Add()([shortcut, x])
    x = layers.Activation("relu")(x)
    return x


def _model(block, num_classes, input_shape, filters, name):
    inputs = Input(shape=input_shape)
    x = layers.Conv2D(filters, 3, padding="same")(inputs)  # the stem: 3 -> filters channels
    x = block(x, filters)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes)(x)
    return Model(inputs, outputs, name=name)


def bn_model(num_classes=10, input_shape=(32, 32, 3), filters=64):
    """Stem, the BatchNormalization block, global average pooling, logits."""
    return _model(residual_block_bn, num_classes, input_shape, filters, "writeup_bn")


def no_norm_model(num_classes=10, input_shape=(32, 32, 3), filters=64):
    """Stem, the block without normalization, global average pooling, logits."""
    return _model(residual_block_no_norm, num_classes, input_shape, filters, "writeup_no_norm")


def ln_model(num_classes=10, input_shape=(32, 32, 3), filters=64):
    """Stem, the LayerNormalization block, global average pooling, logits."""
    return _model(residual_block_ln, num_classes, input_shape, filters, "writeup_ln")


if __name__ == "__main__":
    for build in (bn_model, no_norm_model, ln_model):
        build().summary()
