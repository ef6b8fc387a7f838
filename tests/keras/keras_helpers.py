"""Helpers of the Keras tests: Keras 3 on its PyTorch backend (the test extra); a test module
that imports this is skipped without it."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")


def keras_output(model, x: np.ndarray, training: bool = False) -> np.ndarray:
    """Keras's own forward on channels-last ``x``, as NumPy."""
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=training)))


RELATIVE_TOLERANCE = 1e-6
"""Largest difference allowed, relative to the larger of 1 and the reference's largest magnitude.
float32 rounds each operation by at most 6e-8 relative; the reductions here (convolutions and
Dense over <= a few hundred terms, normalization statistics, pooling) summed in another order
differ by a few ulps of the largest value, 1e-6 is about 8 ulps. A wrong padding side, axis,
weight layout or convention errs by 1e-2 or more."""


def largest_difference(got: np.ndarray, expected: np.ndarray) -> float:
    """``max |got - expected|`` relative to ``max(1, max |expected|)``."""
    assert got.shape == expected.shape, (got.shape, expected.shape)
    scale = max(1.0, float(np.abs(expected).max()))
    return float(np.abs(got.astype(np.float64) - expected).max()) / scale


def assert_same(got: np.ndarray, expected: np.ndarray) -> None:
    difference = largest_difference(got, expected)
    assert difference <= RELATIVE_TOLERANCE, f"relative difference {difference:.3g}"


def converted_output(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The converted module on the same data in normlab's NCHW layout, back as NumPy in Keras's
    layout (an output with spatial axes is moved back to channels-last)."""
    tensor = torch.from_numpy(x)
    out = module(tensor.permute(0, 3, 1, 2) if tensor.dim() == 4 else tensor).detach()
    return (out.permute(0, 2, 3, 1) if out.dim() == 4 else out).numpy()


def randomize(model, seed: int = 0) -> None:
    """Random values for every weight, moving statistics included (variances positive), so that
    a weight copied to the wrong place, or a statistic read as another, shows."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        value = rng.normal(size=shape)
        if "variance" in variable.path:
            value = rng.uniform(0.5, 2.0, size=shape)
        variable.assign(value.astype(variable.dtype))
