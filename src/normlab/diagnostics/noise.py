"""Batch-statistic noise: how far a mini-batch's mean and variance are from the population's.

BN normalizes each training example with the statistics of its mini-batch, so at batch size B
every example sees a noisy estimate of the statistics it is evaluated with at inference. This
measures that noise per BN layer, as a function of B, on the model as given.

Method. One forward pass over ``x`` in eval mode (every BN normalizes with its running
statistics, dropout off): each BN layer's input is then a fixed function of the example, so the
noise measured is the sampling noise of the batch statistic alone, not its feedback through
upstream BN layers. A forward pre-hook keeps, per example i and channel c, the mean m_ic and the
biased variance v_ic over the spatial positions. The population statistics are those of all of
``x`` (the estimator of ``surgery.recalibrate_bn``, i.e. PreciseBN's)::

    mu_c  = mean_i m_ic,    var_c = mean_i v_ic + var_i m_ic        (law of total variance)

A mini-batch S of B examples (drawn without replacement, ``batches_per_size`` per B) has
``mu_Bc = mean_{i in S} m_ic`` and ``var_Bc = mean_{i in S} v_ic + mean_{i in S} (m_ic - mu_Bc)^2``
(the biased variance BN normalizes with), and the relative errors, averaged over channels::

    mean error      = mean_c |mu_Bc - mu_c| / sqrt(var_c)
    variance error  = mean_c |var_Bc / var_c - 1|

Channels with ``var_c`` below the layer's eps (dead channels) are left out: BN's output there is
set by eps, not by the statistics. Reported per B: the mean over batches and its standard
deviation across batches (the spread).

Slope. ``mu_B - mu`` is the mean of B draws of ``m_i - mu`` (between-example variance s^2), so
``Var(mu_B) = s^2 / B * (N - B) / (N - 1)`` and, by the central limit theorem,
``E|mu_B - mu| ~= sqrt(2 / pi) * s / sqrt(B)``: ``log error = const - 0.5 log B`` while
B << N. The variance's error is dominated by the same 1/sqrt(B) term (plus an O(1/B) bias), so
its slope tends to -0.5 too. Only batch sizes with ``B <= N / 4`` are measured, where the
finite-population factor ``sqrt((N - B) / (N - 1))`` stays above 0.86; the slope is the least
squares fit of log(mean error) on log(B). ``mean_slope`` averages the layers' slopes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from normlab.errors import NormlabError
from normlab.train.evaluate import chunks

from .layers import batch_norm_layers, training_flags_restored

DEFAULT_BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128, 256)
MAX_BATCH_FRACTION = 4
"""Batch sizes above N / 4 are skipped (finite-population factor below 0.86)."""


@dataclass(frozen=True)
class LayerNoise:
    """Batch-statistic noise of one BN layer, one entry per measured batch size."""

    name: str
    num_channels: int
    measured_channels: int
    """Channels with population variance above the layer's eps (the others are dead)."""
    batch_sizes: tuple[int, ...]
    mean_error: tuple[float, ...]
    """mean over batches of mean_c |mu_B - mu| / sigma."""
    mean_error_std: tuple[float, ...]
    """Standard deviation of that error across batches."""
    variance_error: tuple[float, ...]
    """mean over batches of mean_c |var_B / var - 1|."""
    variance_error_std: tuple[float, ...]
    slope: float | None
    """Least squares slope of log(mean error) on log(B); theory -0.5. None: fewer than 2 sizes."""
    variance_slope: float | None


@dataclass(frozen=True)
class NoiseReport:
    """Batch-statistic noise of every BN layer of a model over one data set."""

    layers: tuple[LayerNoise, ...]
    batch_sizes: tuple[int, ...]
    skipped_batch_sizes: tuple[int, ...]
    """Requested sizes above N / 4 (or below 2), not measured."""
    batches_per_size: int
    num_examples: int
    mean_slope: float | None
    """Mean of the layers' slopes (None when no layer has one)."""

    def mean_error_at(self, batch_size: int) -> float:
        """The mean's relative error at ``batch_size``, averaged over layers (0 if no layers)."""
        if batch_size not in self.batch_sizes:
            raise NormlabError(f"batch size {batch_size} was not measured ({self.batch_sizes})")
        index = self.batch_sizes.index(batch_size)
        errors = [layer.mean_error[index] for layer in self.layers if layer.measured_channels]
        return float(np.mean(errors)) if errors else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ExampleMoments:
    """Per-example, per-channel mean and biased variance over the spatial positions."""

    def __init__(self) -> None:
        self.means: list[torch.Tensor] = []
        self.variances: list[torch.Tensor] = []

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float64)
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        variance, mean = torch.var_mean(flat, dim=2, correction=0)
        self.means.append(mean)
        self.variances.append(variance)


def layer_input_moments(
    model: nn.Module, x: torch.Tensor, forward_batch_size: int = 256
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per BN layer name: (means, variances), each (N, C) float64, of its input over ``x`` in
    eval mode (see the module docstring). The model's flags and state are left as they were."""
    layers = batch_norm_layers(model)
    moments = {name: _ExampleMoments() for name, _ in layers}
    hooks = [
        module.register_forward_pre_hook(
            lambda layer, args, name=name: moments[name].update(args[0])
        )
        for name, module in layers
    ]
    try:
        with training_flags_restored(model), torch.no_grad():
            model.eval()
            for start, stop in chunks(len(x), forward_batch_size):
                model(x[start:stop])
    finally:
        for hook in hooks:
            hook.remove()
    return {
        name: (torch.cat(m.means), torch.cat(m.variances)) for name, m in moments.items() if m.means
    }


def _slope(batch_sizes: list[int], errors: list[float]) -> float | None:
    points = [(b, e) for b, e in zip(batch_sizes, errors, strict=True) if e > 0]
    if len(points) < 2:
        return None
    log_sizes, log_errors = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    return float(np.polyfit(log_sizes, log_errors, 1)[0])


def _layer_noise(
    name: str,
    eps: float,
    means: torch.Tensor,
    variances: torch.Tensor,
    batch_sizes: list[int],
    batches_per_size: int,
    generator: torch.Generator,
) -> LayerNoise:
    population_mean = means.mean(dim=0)
    population_var = variances.mean(dim=0) + means.var(dim=0, correction=0)
    alive = population_var > eps
    means, variances = means[:, alive], variances[:, alive]
    population_mean, population_var = population_mean[alive], population_var[alive]
    sigma = population_var.sqrt()
    rows: dict[str, list[float]] = {key: [] for key in ("mean", "mean_std", "var", "var_std")}
    num_examples = len(means)
    for batch_size in batch_sizes:
        index = torch.stack(
            [
                torch.randperm(num_examples, generator=generator)[:batch_size]
                for _ in range(batches_per_size)
            ]
        )
        if not alive.any():
            # Every channel dead: no error to measure, and reducing over no channel makes torch
            # warn ("degrees of freedom is <= 0"). The draws above keep the seeded stream of
            # the later layers as it was.
            for key in rows:
                rows[key].append(0.0)
            continue
        batch_means, batch_variances = means[index], variances[index]  # (K, B, C)
        mu_batch = batch_means.mean(dim=1)
        var_batch = batch_variances.mean(dim=1) + batch_means.var(dim=1, correction=0)
        mean_error = ((mu_batch - population_mean).abs() / sigma).mean(dim=1)
        variance_error = (var_batch / population_var - 1).abs().mean(dim=1)
        rows["mean"].append(float(mean_error.mean()))
        rows["mean_std"].append(float(mean_error.std(correction=0)))
        rows["var"].append(float(variance_error.mean()))
        rows["var_std"].append(float(variance_error.std(correction=0)))
    return LayerNoise(
        name=name,
        num_channels=int(alive.numel()),
        measured_channels=int(alive.sum()),
        batch_sizes=tuple(batch_sizes),
        mean_error=tuple(rows["mean"]),
        mean_error_std=tuple(rows["mean_std"]),
        variance_error=tuple(rows["var"]),
        variance_error_std=tuple(rows["var_std"]),
        slope=_slope(batch_sizes, rows["mean"]),
        variance_slope=_slope(batch_sizes, rows["var"]),
    )


def batch_stat_noise(
    model: nn.Module,
    x: torch.Tensor,
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    batches_per_size: int = 32,
    seed: int = 0,
) -> NoiseReport:
    """Per BN layer, the relative error of mini-batch mean and variance against the population
    statistics over ``x``, for each batch size, with its spread and log-log slope.

    See the module docstring for the definitions and the -0.5 slope. Sizes above ``len(x) / 4``
    are skipped (listed in ``skipped_batch_sizes``). Nothing of ``model`` changes: no parameter,
    no buffer, no training flag. Batches are drawn from a generator seeded with ``seed``.
    """
    if batches_per_size < 2:
        raise NormlabError(f"batches_per_size must be >= 2, got {batches_per_size}")
    limit = len(x) // MAX_BATCH_FRACTION
    measured = sorted({int(b) for b in batch_sizes if 2 <= b <= limit})
    skipped = tuple(sorted({int(b) for b in batch_sizes} - set(measured)))
    generator = torch.Generator().manual_seed(seed)
    eps = {name: module.eps for name, module in batch_norm_layers(model)}
    moments = layer_input_moments(model, x) if measured else {}
    layers = tuple(
        _layer_noise(name, eps[name], means, variances, measured, batches_per_size, generator)
        for name, (means, variances) in moments.items()
    )
    slopes = [layer.slope for layer in layers if layer.slope is not None]
    return NoiseReport(
        layers=layers,
        batch_sizes=tuple(measured),
        skipped_batch_sizes=skipped,
        batches_per_size=batches_per_size,
        num_examples=len(x),
        mean_slope=float(np.mean(slopes)) if slopes else None,
    )


def expected_mean_error(batch_size: int) -> float:
    """E|mu_B - mu| / sigma for i.i.d. Gaussian examples without spatial positions:
    sqrt(2 / (pi B)), the scale the doctor's noise threshold is stated in."""
    return math.sqrt(2.0 / (math.pi * batch_size))
