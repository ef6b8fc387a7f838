"""normlab's norms as the Keras layers that compute them (keras/equivalents.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from keras_helpers import assert_same, converted_output, keras, randomize

from normlab.keras import from_keras, keras_layer
from normlab.norms import make_norm


@pytest.mark.parametrize(
    ("norm", "options"),
    [("ln", {}), ("gn", {}), ("gn", {"groups": 4}), ("in", {}), ("ln_chw", {}), ("bn_keras", {})],
)
def test_the_named_keras_layer_converts_to_the_norm_it_stands_for(norm, options):
    # The layer's source, evaluated and converted, is normlab's norm with its defaults.
    layer = eval(keras_layer(norm, options), {"keras": keras})
    inputs = keras.Input((5, 5, 16))
    model = keras.Model(inputs, layer(inputs))
    randomize(model)
    converted = next(iter(from_keras(model).children()))
    reference = make_norm(norm, 16, **options)
    reference.load_state_dict(converted.state_dict())
    x = np.random.default_rng(0).normal(size=(3, 5, 5, 16)).astype(np.float32)
    expected = reference.eval()(torch.from_numpy(x).permute(0, 3, 1, 2)).detach()
    assert_same(converted_output(converted.eval(), x), expected.permute(0, 2, 3, 1).numpy())


def test_none_is_no_layer_and_norms_without_a_keras_layer_have_none():
    assert keras_layer("none") == ""
    assert keras_layer("frn") is None and keras_layer("mabn") is None
