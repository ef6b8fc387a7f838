"""Fixtures of the float64 packed-vs-alone tests (test_packed_func*.py): exactness is checked
in float64, on one small synthetic dataset whose options the tests' configs name too."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from normlab.data import synthetic

PACKED_DATA_OPTIONS = {"num_examples": 64, "num_classes": 4, "size": 8, "noise": 0.8}
"""The dataset of ``data64``; the tests' configs trained on it name the same options."""


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="module")
def data64():
    data = synthetic(**PACKED_DATA_OPTIONS, seed=0)
    return dataclasses.replace(
        data, **{f: getattr(data, f).double() for f in ("x_train", "x_val", "x_test")}
    )
