import math
import warnings

import pytest
import torch
from torch import nn

from normlab.diagnostics import batch_stat_noise
from normlab.diagnostics.checks import check_batch_noise, noise_for_doctor
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


def _per_example_offsets(
    num_examples: int, between: float, within: float, seed: int = 0, class_means=None, labels=None
) -> torch.Tensor:
    """(N, 4, 8, 8) float64: per example and channel one offset (between-example part, sd
    ``between``, plus a class mean if given) and per position noise (within, sd ``within``)."""
    generator = torch.Generator().manual_seed(seed)
    offsets = between * torch.randn(num_examples, 4, 1, 1, generator=generator, dtype=torch.float64)
    if class_means is not None:
        offsets = offsets + class_means[labels].view(-1, 4, 1, 1)
    noise = torch.randn(num_examples, 4, 8, 8, generator=generator, dtype=torch.float64)
    return offsets + within * noise


def test_small_between_example_share_is_noisy_at_batch_8():
    """Issue 23: the threshold 0.20 = sqrt(2 / (16 pi)) is the error of a mean of 16 independent
    examples in units of their standard deviation, but the error was divided by a sigma that
    includes the within-example (spatial) variance. With a between-example share of 10% the old
    error at batch 8 was about sqrt(0.1) x 0.28 = 0.09: no finding, where the rationale (batch <
    16 degrades) says there is one. In between-example units it is 0.28 (> 0.20) at batch 8,
    and 0.14 (< 0.20) at batch 32."""
    model = nn.Sequential(nn.BatchNorm2d(4)).double()
    x = _per_example_offsets(512, between=1.0, within=3.0)  # share 1 / (1 + 9 x 63/64) ~ 0.10
    report = noise_for_doctor(model, x, (2, 4, 8, 16, 32, 64))
    (layer,) = report.layers
    assert layer.between_share == pytest.approx(0.1, abs=0.03)
    (finding,) = check_batch_noise(report, 8)
    assert finding.code == "bn-batch-noise"
    assert finding.evidence["noisiest_layers"]["0"] == pytest.approx(
        expected_mean_error(8),
        rel=0.25,  # 16 batches of 4 channels: sampling noise ~10%
    )
    assert check_batch_noise(report, 32) == []


def test_classes_per_batch_batches_are_noisier():
    """Batches drawn as a classes_per_batch run draws them hold 2 of 4 classes: their mean is
    off by the class means too, which independent draws average out (issue 23: 0.37 against
    0.20 at batch 16 on ResNet-20). Here class means of sd 1 and example offsets of sd 0.5: at
    batch 16 the error is about twice the i.i.d. one (measured 0.39 against 0.20; 1.5x is
    asserted, beyond the ~10% sampling noise of 32 batches), and crosses the threshold."""
    labels = torch.arange(512) % 4
    class_means = torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = _per_example_offsets(512, 0.5, 1.0, class_means=class_means, labels=labels)
    model = nn.Sequential(nn.BatchNorm2d(4)).double()
    independent = batch_stat_noise(model, x, (16, 32), labels=labels)
    correlated = batch_stat_noise(model, x, (16, 32), labels=labels, classes_per_batch=2)
    assert correlated.classes_per_batch == 2 and independent.sampler == "shuffle"
    assert independent.between_error_at(16) == pytest.approx(expected_mean_error(16), rel=0.25)
    assert correlated.between_error_at(16) > 1.5 * independent.between_error_at(16)
    assert check_batch_noise(correlated, 16) and not check_batch_noise(independent, 32)
    # The slope, -0.5 by construction for independent batches, flattens for correlated ones:
    # the between-class part of the noise does not shrink with B.
    assert correlated.layers[0].between_slope > -0.3


def test_sizes_the_sampler_cannot_fill_are_skipped():
    labels = torch.arange(64) % 4
    x = torch.randn(64, 4, dtype=torch.float64)
    report = batch_stat_noise(
        nn.BatchNorm1d(4).double(), x, (2, 4, 8), labels=labels, classes_per_batch=3
    )
    assert report.batch_sizes == (4, 8) and report.skipped_batch_sizes == (2,)  # 2 < 3 classes
