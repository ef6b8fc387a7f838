import math
import warnings

import pytest
import torch
from torch import nn

from normlab.diagnostics import batch_stat_noise
from normlab.diagnostics.noise import expected_mean_error
from normlab.errors import NormlabError

from .helpers import assert_state_unchanged, small_cnn, state_snapshot


def test_slope_on_gaussian_activations_is_minus_one_half():
    # A BN fed directly by i.i.d. Gaussian inputs (float64): the mean's error is
    # sqrt(2 / (pi B)) up to the finite-population factor, so the fitted slope is -0.5 up to
    # the sampling noise of 64 batches per size (a few hundredths).
    torch.manual_seed(0)
    model = nn.BatchNorm1d(16).double()
    x = 3.0 * torch.randn(2048, 16, dtype=torch.float64) + 1.0
    report = batch_stat_noise(model, x, batches_per_size=64)
    assert report.batch_sizes == (2, 4, 8, 16, 32, 64, 128, 256)
    (layer,) = report.layers
    assert -0.65 <= layer.slope <= -0.35
    assert -0.65 <= layer.variance_slope <= -0.35
    assert report.mean_slope == pytest.approx(layer.slope)
    # The level too: E|mu_B - mu| / sigma at B = 16 within 15% of the Gaussian value.
    assert layer.mean_error[3] == pytest.approx(expected_mean_error(16), rel=0.15)
    assert all(spread > 0 for spread in layer.mean_error_std)


def test_spatial_layer_and_skipped_sizes():
    torch.manual_seed(0)
    model = small_cnn()
    x = torch.randn(64, 1, 8, 8)
    report = batch_stat_noise(model, x, batch_sizes=(2, 4, 8, 16, 32), seed=1)
    assert report.batch_sizes == (2, 4, 8, 16)  # 32 > 64 / 4
    assert report.skipped_batch_sizes == (32,)
    assert [layer.name for layer in report.layers] == ["1", "4"]
    for layer in report.layers:
        # Errors fall with the batch size (strictly, averaged over 32 batches each).
        assert list(layer.mean_error) == sorted(layer.mean_error, reverse=True)
        assert layer.measured_channels <= layer.num_channels == 8
    assert report.mean_error_at(4) > report.mean_error_at(16)
    data = report.to_dict()
    assert data["layers"][0]["slope"] == report.layers[0].slope
    assert "mean_slope" in data


def test_nothing_of_the_model_changes():
    torch.manual_seed(0)
    model = small_cnn().train()
    model[4].eval()
    snapshot = state_snapshot(model)
    flags = [module.training for module in model.modules()]
    batch_stat_noise(model, torch.randn(32, 1, 8, 8), batch_sizes=(2, 4))
    assert_state_unchanged(model, snapshot)
    assert [module.training for module in model.modules()] == flags


def test_dead_channels_are_left_out():
    model = nn.BatchNorm1d(4).double()
    x = torch.randn(256, 4, dtype=torch.float64)
    x[:, 0] = 2.0  # constant channel: population variance 0
    (layer,) = batch_stat_noise(model, x, batch_sizes=(2, 4)).layers
    assert layer.measured_channels == 3
    assert all(math.isfinite(error) for error in layer.mean_error)


def test_a_layer_with_every_channel_dead_measures_zero_without_warnings():
    # A ReLU of a constant negative input: the BN sees zeros only (as a 1x1 stage can).
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4)).double()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(-1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "degrees of freedom is <= 0" must not leak
        (layer,) = batch_stat_noise(model, torch.randn(64, 3, dtype=torch.float64)).layers
    assert layer.measured_channels == 0
    assert layer.mean_error == layer.variance_error == (0.0,) * len(layer.batch_sizes)


def test_refuses_too_few_batches():
    with pytest.raises(NormlabError, match="batches_per_size"):
        batch_stat_noise(nn.BatchNorm1d(2), torch.randn(16, 2), batches_per_size=1)
