"""A model that does not fit the data is one line naming both sides and the fix (model_fit.py)."""

import pytest
import torch
from torch import nn

from normlab.data import synthetic
from normlab.errors import NormlabError
from normlab.train.model_fit import check_model_fits


@pytest.fixture(scope="module")
def gray():
    """1-channel 8x8 images in 4 classes (digits' shape)."""
    return synthetic(num_examples=40, num_classes=4, channels=1, size=8, seed=0)


def conv_net(in_channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def test_a_model_that_fits_passes_and_is_left_unchanged(gray):
    model = conv_net(1, 4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_model_fits(model, gray, "net.py:make_net")
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_wrong_input_channels_name_both_and_the_option(gray):
    with pytest.raises(NormlabError) as caught:
        check_model_fits(conv_net(3, 4), gray, "net.py:make_net")
    message = str(caught.value)
    assert "\n" not in message
    assert "expects 3 input channels (its first layer, 0: Conv2d)" in message
    assert "1x8x8 images, 1 channel" in message
    assert "give --data a dataset with 3 channels" in message
    assert "let the factory take in_channels (normlab passes 1)" in message
    with pytest.raises(NormlabError, match=r"give \[run\] dataset a dataset"):
        check_model_fits(conv_net(3, 4), gray, "m:f", data_option="[run] dataset")


def test_wrong_input_size_of_a_first_linear_layer(gray):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
    with pytest.raises(NormlabError, match=r"expects 3072 input values .* 64 values"):
        check_model_fits(model, gray, "m:f")


def test_wrong_number_of_classes(gray):
    with pytest.raises(NormlabError, match=r"shape \(2, 10\).*4 classes.*take num_classes"):
        check_model_fits(conv_net(1, 10), gray, "m:f")


def test_any_other_failure_is_one_line_with_the_layer(gray):
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = conv_net(1, 4)

        def forward(self, x):
            return self.body(x).view(3, -1)

    with pytest.raises(NormlabError) as caught:
        check_model_fits(Broken(), gray, "m:f")
    message = str(caught.value)
    assert "fails on a batch of the data synthetic (1x8x8 images) in body.5" in message
    assert "RuntimeError" in message and "\n" not in message
