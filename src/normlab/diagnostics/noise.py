"""Batch-statistic noise: how far a mini-batch's mean and variance are from the population's.

BN normalizes each training example with the statistics of its mini-batch, so at batch size B
every example sees a noisy estimate of the statistics it is evaluated with at inference. This
measures that noise per BN layer, as a function of B, on the model as given, with mini-batches
drawn as training draws them.

Method. One forward pass over ``x`` in eval mode (every BN normalizes with its running
statistics, dropout off): each BN layer's input is then a fixed function of the example, so the
noise measured is the sampling noise of the batch statistic alone, not its feedback through
upstream BN layers. A forward pre-hook keeps, per example i and channel c, the mean m_ic and the
biased variance v_ic over the spatial positions. The population statistics are those of all of
``x`` (the estimator of ``surgery.recalibrate_bn``, i.e. PreciseBN's), and the law of total
variance splits each channel's variance into a between-example and a within-example part::

    mu_c = mean_i m_ic,    var_c = b_c + w_c,    b_c = var_i m_ic,    w_c = mean_i v_ic

A mini-batch S of B examples has ``mu_Bc = mean_{i in S} m_ic`` and
``var_Bc = mean_{i in S} v_ic + mean_{i in S} (m_ic - mu_Bc)^2`` (the biased variance BN
normalizes with). The batches are drawn as the run draws its training batches
(``data.epoch_order`` with its ``sampler``, ``classes_per_batch`` and labels; ``batches_per_size``
per B): with ``classes_per_batch`` the examples of a batch are correlated, and the noise is
larger than for independent examples. Reported per B, averaged over channels, the mean over
batches and its standard deviation across batches (the spread) of::

    between error   = mean_c |mu_Bc - mu_c| / sqrt(b_c)     (between-example units)
    mean error      = mean_c |mu_Bc - mu_c| / sqrt(var_c)   (the shift of BN's output)
    variance error  = mean_c |var_Bc / var_c - 1|

Only the positions of one example are averaged within it, so the batch mean's noise comes from
the between-example part alone: ``between error`` is in the units in which a batch of B
independent examples has ``E|mu_B - mu| / s = sqrt(2 / (pi B))`` (``expected_mean_error``), the
scale of the doctor's threshold. ``mean error`` divides by a sigma that includes the
within-example spatial variance (between-example share ``b_c / var_c``: 5.5-28% on ResNet-20
with shapes), so it is smaller by ``sqrt(share)`` and is not comparable with that threshold.
Channels with ``var_c`` below the layer's eps (dead channels) are left out, and from the between
error also channels with ``b_c`` below eps (no between-example variation to be noisy about).

Slope: a consistency check, not evidence about the model. For i.i.d. batches ``Var(mu_B) =
s^2 / B * (N - B) / (N - 1)``, so ``log error = const - 0.5 log B`` holds by construction
whatever the model (the finite population alone moves it to about -0.52 over 2..N/4); a
measured slope far from -0.5 with the ``shuffle`` sampler means a bug, and with
``classes_per_batch`` it shows the correlated batches (a flatter slope: the between-class part
of the noise does not shrink with B). Only batch sizes with ``B <= N / 4`` are measured, where
the finite-population factor ``sqrt((N - B) / (N - 1))`` stays above 0.86 (and sizes the
sampler cannot fill, e.g. ``B < classes_per_batch``, are skipped); the slope is the least
squares fit of log(error) on log(B). ``mean_slope`` averages the layers' slopes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from normlab.data import epoch_order
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
    """Least squares slope of log(mean error) on log(B): -0.5 by construction for i.i.d.
    batches (a check, module docstring). None: fewer than 2 sizes."""
    variance_slope: float | None
    between_share: float
    """Mean over measured channels of b_c / var_c, the between-example share of the variance."""
    between_error: tuple[float, ...]
    """mean over batches of mean_c |mu_B - mu| / sqrt(b_c): between-example units, the scale
    of ``expected_mean_error`` and of the doctor's threshold."""
    between_error_std: tuple[float, ...]
    between_slope: float | None


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
    """Mean of the layers' slopes (None when no layer has one): a consistency check."""
    sampler: str = "shuffle"
    """How the batches were drawn (``data.epoch_order``), with ``classes_per_batch``."""
    classes_per_batch: int | None = None

    def mean_error_at(self, batch_size: int) -> float:
        """The mean's relative error at ``batch_size``, averaged over layers (0 if no layers)."""
        return self._averaged("mean_error", batch_size)

    def between_error_at(self, batch_size: int) -> float:
        """The mean's error in between-example units at ``batch_size``, averaged over layers."""
        return self._averaged("between_error", batch_size)

    def _averaged(self, field: str, batch_size: int) -> float:
        if batch_size not in self.batch_sizes:
            raise NormlabError(f"batch size {batch_size} was not measured ({self.batch_sizes})")
        index = self.batch_sizes.index(batch_size)
        errors = [getattr(layer, field)[index] for layer in self.layers if layer.measured_channels]
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


def sampled_batches(
    num_examples: int,
    batch_size: int,
    count: int,
    *,
    seed: int = 0,
    sampler: str = "shuffle",
    labels: torch.Tensor | None = None,
    classes_per_batch: int | None = None,
) -> torch.Tensor | None:
    """``count`` training batches (count, batch_size) of indices, drawn as a run seeded ``seed``
    draws them (``data.epoch_order``, epoch after epoch); None when the sampler cannot draw a
    batch of this size from these examples (e.g. ``batch_size < classes_per_batch``)."""
    rows: list[torch.Tensor] = []
    drawn, epoch = 0, 0
    while drawn < count:
        try:
            order = epoch_order(
                seed,
                epoch,
                num_examples,
                batch_size,
                sampler,
                labels=labels,
                classes_per_batch=classes_per_batch,
            )
        except NormlabError:
            if epoch == 0:
                return None
            raise
        rows.append(order)
        drawn += len(order)
        epoch += 1
    return torch.cat(rows)[:count]


def _relative_errors(
    batch_means: torch.Tensor, population_mean: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Per batch, mean over channels of |mu_B - mu| / scale (0 without any channel)."""
    if not scale.numel():
        return torch.zeros(len(batch_means), dtype=torch.float64)
    return ((batch_means.mean(dim=1) - population_mean).abs() / scale).mean(dim=1)


def _layer_noise(
    name: str,
    eps: float,
    means: torch.Tensor,
    variances: torch.Tensor,
    batches: dict[int, torch.Tensor],
) -> LayerNoise:
    population_mean = means.mean(dim=0)
    between = means.var(dim=0, correction=0)
    population_var = variances.mean(dim=0) + between
    alive = population_var > eps
    varying = alive & (between > eps)  # channels whose per-example means vary
    rows: dict[str, list[float]] = {
        key: [] for key in ("mean", "mean_std", "var", "var_std", "between", "between_std")
    }
    for index in batches.values():
        batch_means, batch_variances = means[index], variances[index]  # (K, B, C)
        mean_error = _relative_errors(
            batch_means[..., alive], population_mean[alive], population_var[alive].sqrt()
        )
        between_error = _relative_errors(
            batch_means[..., varying], population_mean[varying], between[varying].sqrt()
        )
        var_batch = batch_variances.mean(dim=1) + batch_means.var(dim=1, correction=0)
        variance_error = (var_batch[:, alive] / population_var[alive] - 1).abs().mean(dim=1)
        if not alive.any():
            variance_error = torch.zeros(len(index), dtype=torch.float64)
        for key, values in (
            ("mean", mean_error),
            ("var", variance_error),
            ("between", between_error),
        ):
            rows[key].append(float(values.mean()))
            rows[f"{key}_std"].append(float(values.std(correction=0)))
    sizes = list(batches)
    share = between[alive] / population_var[alive]
    return LayerNoise(
        name=name,
        num_channels=int(alive.numel()),
        measured_channels=int(alive.sum()),
        batch_sizes=tuple(sizes),
        mean_error=tuple(rows["mean"]),
        mean_error_std=tuple(rows["mean_std"]),
        variance_error=tuple(rows["var"]),
        variance_error_std=tuple(rows["var_std"]),
        slope=_slope(sizes, rows["mean"]),
        variance_slope=_slope(sizes, rows["var"]),
        between_share=float(share.mean()) if alive.any() else 0.0,
        between_error=tuple(rows["between"]),
        between_error_std=tuple(rows["between_std"]),
        between_slope=_slope(sizes, rows["between"]),
    )


def batch_stat_noise(
    model: nn.Module,
    x: torch.Tensor,
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    batches_per_size: int = 32,
    seed: int = 0,
    *,
    labels: torch.Tensor | None = None,
    sampler: str = "shuffle",
    classes_per_batch: int | None = None,
) -> NoiseReport:
    """Per BN layer, the error of mini-batch mean (in between-example units and in units of the
    population standard deviation) and variance against the population statistics over ``x``,
    for each batch size, with its spread and log-log slope.

    See the module docstring for the definitions and the -0.5 slope. Batches are drawn as a run
    seeded ``seed`` with ``sampler`` and ``classes_per_batch`` draws its training batches
    (``labels``, one per example of ``x``, are needed by ``balanced`` and
    ``classes_per_batch``). Sizes above ``len(x) / 4``, or that the sampler cannot fill, are
    skipped (listed in ``skipped_batch_sizes``). Nothing of ``model`` changes: no parameter, no
    buffer, no training flag.
    """
    if batches_per_size < 2:
        raise NormlabError(f"batches_per_size must be >= 2, got {batches_per_size}")
    limit = len(x) // MAX_BATCH_FRACTION
    requested = sorted({int(b) for b in batch_sizes})
    batches: dict[int, torch.Tensor] = {}
    for size in requested:
        if not 2 <= size <= limit:
            continue
        drawn = sampled_batches(
            len(x),
            size,
            batches_per_size,
            seed=seed,
            sampler=sampler,
            labels=None if labels is None else labels.cpu(),
            classes_per_batch=classes_per_batch,
        )
        if drawn is not None:
            batches[size] = drawn
    skipped = tuple(size for size in requested if size not in batches)
    eps = {name: module.eps for name, module in batch_norm_layers(model)}
    moments = layer_input_moments(model, x) if batches else {}
    layers = tuple(
        _layer_noise(name, eps[name], means, variances, batches)
        for name, (means, variances) in moments.items()
    )
    slopes = [layer.slope for layer in layers if layer.slope is not None]
    return NoiseReport(
        layers=layers,
        batch_sizes=tuple(batches),
        skipped_batch_sizes=skipped,
        batches_per_size=batches_per_size,
        num_examples=len(x),
        mean_slope=float(np.mean(slopes)) if slopes else None,
        sampler=sampler,
        classes_per_batch=classes_per_batch,
    )


def expected_mean_error(batch_size: int) -> float:
    """E|mu_B - mu| / s for B i.i.d. Gaussian per-example means of standard deviation s:
    sqrt(2 / (pi B)), the between-example units the doctor's noise threshold is stated in."""
    return math.sqrt(2.0 / (math.pi * batch_size))
