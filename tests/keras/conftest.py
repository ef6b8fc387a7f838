"""The Keras tests run Keras 3 on its PyTorch backend unless KERAS_BACKEND says otherwise."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
