"""Keras factories through ``--model file.py:factory`` (train/model_ref.py)."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.errors import NormlabError
from normlab.keras import KerasModel
from normlab.norms import ChannelLayerNorm
from normlab.train import build_model_from_ref
from normlab.train.model_ref import model_format, resolve_factory

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("keras")

FACTORY = """
from keras import Input, Model, layers

CALLS = []

def make(num_classes, input_shape):
    CALLS.append((num_classes, input_shape))
    inputs = Input(shape=input_shape)
    x = layers.Conv2D(4, 3, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return Model(inputs, layers.Dense(num_classes, activation=ACTIVATION)(x))
"""
ARGS = {"num_classes": 3, "in_channels": 2, "input_shape": (2, 6, 5)}


def write(tmp_path, activation=None):
    path = tmp_path / "keras_net.py"
    path.write_text(textwrap.dedent(FACTORY) + f"\nACTIVATION = {activation!r}\n")
    return f"{path}:make"


def test_a_keras_factory_gets_keras_input_shape_and_is_converted(tmp_path):
    ref = write(tmp_path)
    model = build_model_from_ref(ref, norm=None, **ARGS)
    assert isinstance(model, KerasModel)
    calls = resolve_factory(ref).__globals__["CALLS"]
    assert calls == [(3, (6, 5, 2))]  # (height, width, channels), as keras.Input takes it
    assert model_format(ref, **ARGS) == "keras" and model_format("resnet", **ARGS) == ""


def test_its_batch_norms_are_swapped_per_norm(tmp_path):
    ref = write(tmp_path)
    baseline = build_model_from_ref(ref, norm="bn", **ARGS)
    assert len([m for m in baseline.modules() if isinstance(m, _BatchNorm)]) == 1
    swapped = build_model_from_ref(ref, norm="ln", **ARGS)
    assert not [m for m in swapped.modules() if isinstance(m, _BatchNorm)]
    assert [type(m) for m in swapped.modules() if isinstance(m, ChannelLayerNorm)]


def test_a_softmax_output_is_refused_for_training_on_logits(tmp_path):
    with pytest.raises(NormlabError, match="ends in a softmax.*Dense\\(num_classes\\)"):
        build_model_from_ref(write(tmp_path, "softmax"), norm=None, **ARGS)


def test_a_file_importing_missing_keras_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "needs_keras.py"
    path.write_text("import keras\n\ndef make():\n    pass\n")
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(NormlabError, match=r"pip install normlab\[keras\]"):
        build_model_from_ref(f"{path}:make", norm=None, **ARGS)


def test_a_keras_factory_draws_its_weights_from_the_run_seed(tmp_path):
    ref = write(tmp_path)

    def weights(seed):
        torch.manual_seed(seed)
        return [
            p.detach().clone() for p in build_model_from_ref(ref, norm=None, **ARGS).parameters()
        ]

    first, again, other = weights(3), weights(3), weights(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
