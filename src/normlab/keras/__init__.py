"""Keras models as PyTorch modules: ``from_keras(model)``, behind the extra ``normlab[keras]``.

A built Keras model (Sequential or functional, Keras 3 on any backend or tf.keras) becomes an
``nn.Module`` with the same weights and the same arithmetic, taking normlab's NCHW input, whose
normalizations are normlab's registry layers (``BatchNormalization`` is ``bn_keras``), so that
a study swaps them like any model's. ``--model file.py:factory`` converts a factory's Keras
model with it (``train/model_ref.py``). Importing this package does not import Keras.
"""

from .backend import INSTALL_HINT, import_keras, is_keras_model, prefer_torch_backend
from .convert import KerasModel, from_keras
from .equivalents import keras_layer
from .layers import SUPPORTED_LAYERS

__all__ = [
    "INSTALL_HINT",
    "SUPPORTED_LAYERS",
    "KerasModel",
    "from_keras",
    "import_keras",
    "is_keras_model",
    "keras_layer",
    "prefer_torch_backend",
]
