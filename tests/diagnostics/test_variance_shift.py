import pytest
import torch
from torch import nn

from normlab.diagnostics import shift_cost_of, variance_shift
from normlab.diagnostics.variance_shift import dropout_upstream
from normlab.models import resnet

from .helpers import assert_state_unchanged, state_snapshot, train_briefly


@pytest.mark.parametrize("drop", [0.1, 0.3, 0.5])
def test_ratio_is_keep_probability_for_zero_mean_input(drop):
    # Dropout right before BN, zero-mean Gaussian input: Var_inference / Var_train = p exactly
    # in expectation. Per channel the ratio's standard error is about
    # sqrt(3 (1 - p) / (p N)) <= 0.03 for N = 4096, and 16 channels are averaged: 0.02 is
    # over 4 standard errors.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(drop), nn.BatchNorm1d(16)).double()
    x = torch.randn(4096, 16, dtype=torch.float64)
    (layer,) = variance_shift(model, x).layers
    assert layer.name == "1" and layer.dropout == "0" and layer.modules_between == 0
    assert layer.keep_probability == pytest.approx(1 - drop)
    assert layer.ratio == pytest.approx(1 - drop, abs=0.02)


def test_ratio_follows_the_closed_form_with_a_mean():
    # c = 1.5, v = 1, p = 0.7: p v / (v + (1 - p) c^2) = 0.7 / 1.675 = 0.418.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(0.3), nn.BatchNorm1d(16)).double()
    x = torch.randn(4096, 16, dtype=torch.float64) + 1.5
    (layer,) = variance_shift(model, x).layers
    assert layer.predicted_ratio == pytest.approx(0.7 / 1.675, abs=0.01)
    assert layer.ratio == pytest.approx(layer.predicted_ratio, abs=0.02)


def test_finds_dropout_per_block_and_not_at_the_head():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    before = dropout_upstream(
        resnet("bn", depth=6, widths=(4, 8), dropout=0.2, dropout_position="before_norm"), x
    )
    assert before["blocks.0.norm1"] == ("blocks.0.dropout", pytest.approx(0.8), 0)
    assert "stem.1" not in before  # the stem's BN runs before any dropout
    after = dropout_upstream(
        resnet("bn", depth=6, widths=(4, 8), dropout=0.2, dropout_position="after_norm"), x
    )
    # norm1 -> dropout -> ReLU -> conv2 -> norm2: two modules between.
    assert after["blocks.0.norm2"] == ("blocks.0.dropout", pytest.approx(0.8), 2)
    assert "blocks.0.norm1" not in after and "blocks.1.norm1" not in after
    assert dropout_upstream(resnet("bn", depth=6, widths=(4, 8), dropout=0.2), x) == {}


def test_accuracy_cost_and_model_untouched():
    torch.manual_seed(0)
    model = resnet(
        "bn", depth=6, widths=(4, 8), dropout=0.5, dropout_position="before_norm", num_classes=4
    )
    x, y = torch.randn(64, 1, 8, 8), torch.arange(64) % 4
    snapshot = state_snapshot(model)
    report = variance_shift(model, x, x_eval=x, y_eval=y, batch_size=8)
    assert_state_unchanged(model, snapshot)
    assert len(report.layers) == 4
    assert all(layer.ratio < 0.9 for layer in report.layers)
    assert report.shift_cost == pytest.approx(report.precise_acc - report.precise_dropout_acc)
    assert report.recalibration_gain == pytest.approx(report.precise_acc - report.running_acc)
    assert report.to_dict()["shift_cost"] == report.shift_cost


def test_reported_cost_is_the_shift_not_the_ema_lag():
    """Corrupting the running statistics (an EMA that lags far behind) changes the EMA's
    accuracy but not the shift's cost: both PreciseBN passes replace them. Before issue 23 the
    reported cost was PreciseBN minus EMA and moved with the corruption."""
    torch.manual_seed(0)
    model = resnet(
        "bn", depth=6, widths=(4, 8), dropout=0.5, dropout_position="before_norm", num_classes=4
    )
    y = torch.arange(256) % 4
    x = torch.randn(256, 1, 8, 8) + 0.5 * y.view(-1, 1, 1, 1).float()  # class = offset
    train_briefly(model, x, y, batch_size=32, steps=60)
    clean = variance_shift(model, x, x_eval=x, y_eval=y, batch_size=32).to_dict()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.add_(1.0)
    lagging = variance_shift(model, x, x_eval=x, y_eval=y, batch_size=32).to_dict()
    assert lagging["running_acc"] != clean["running_acc"]
    assert lagging["shift_cost"] == clean["shift_cost"]
    assert lagging["shift_cost"] == lagging["precise_acc"] - lagging["precise_dropout_acc"]
    assert lagging["recalibration_gain"] != clean["recalibration_gain"]


def test_shift_cost_reads_records_of_both_versions():
    old = {"running_acc": 0.5, "precise_acc": 0.8, "precise_dropout_acc": 0.7, "accuracy_cost": 0.3}
    assert shift_cost_of(old) == pytest.approx(0.1)  # not the stored accuracy_cost
    assert shift_cost_of({"layers": [], "running_acc": None}) is None
