"""Finding Keras: the optional extra, its backend, and recognizing a Keras model without it.

Keras 3 runs on PyTorch, so normlab needs no TensorFlow: when ``KERAS_BACKEND`` is unset and
Keras is not imported yet, normlab sets it to ``torch`` before Keras (or a user's model file,
which imports it) is first imported. A backend chosen by the user (``KERAS_BACKEND``) is kept:
conversion reads weights as NumPy arrays and works with any backend.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

from normlab.errors import NormlabError

INSTALL_HINT = "pip install normlab[keras]"
"""What to run when Keras is missing."""

_KERAS_PACKAGES = ("keras", "tf_keras", "tensorflow")
_MODEL_CLASSES = {"Model", "Sequential", "Functional"}


def prefer_torch_backend() -> None:
    """Set ``KERAS_BACKEND=torch`` unless it is set or Keras is already imported."""
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "torch")


def import_keras() -> ModuleType:
    """The ``keras`` module; a :class:`NormlabError` naming the extra when it cannot load."""
    prefer_torch_backend()
    try:
        import keras
    except ImportError as error:
        raise NormlabError(
            f"Keras models need Keras 3: {INSTALL_HINT} (importing keras failed: {error})"
        ) from None
    return keras


def is_keras_model(value: Any) -> bool:
    """Whether ``value`` is a Keras model (Keras 3 or tf.keras), judged by its classes alone so
    that Keras need not be importable."""
    return any(
        cls.__name__ in _MODEL_CLASSES and cls.__module__.split(".")[0] in _KERAS_PACKAGES
        for cls in type(value).__mro__
    )


def missing_keras(error: BaseException) -> bool:
    """Whether ``error`` is the import of Keras (or its TensorFlow backend) failing."""
    name = getattr(error, "name", None) or ""
    return isinstance(error, ImportError) and name.split(".")[0] in _KERAS_PACKAGES
