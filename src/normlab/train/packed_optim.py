"""The optimizer of a packed model: per run exactly ``torch.optim.SGD`` / ``torch.optim.AdamW``.

Every parameter of a packed model is K runs' tensors concatenated along the first dimension, so
viewed as (K, n) row k is run k's. The update is the single-tensor algorithm PyTorch runs on
CPU, with each hyperparameter a (K, 1) column holding the runs' own values:

SGD (momentum ``m``, weight decay ``lambda``, no dampening or Nesterov, as ``build_optimizer``)::

    d = g + lambda * p;    b = m * b + d   (b = d at the first step);    p = p - lr * b

AdamW (Loshchilov & Hutter 2019; betas = (momentum, 0.999), eps = 1e-8), step t::

    p = p * (1 - lr * lambda);   m1 = lerp(m1, g, 1 - beta1);   m2 = beta2 m2 + (1 - beta2) g^2
    p = p - lr / (1 - beta1^t) * m1 / (sqrt(m2) / sqrt(1 - beta2^t) + eps)

``lambda`` is the run's ``weight_decay``, or 0 for parameters that were 1-D in the run's own
model when the run sets ``norm_weight_decay=False`` (``optim.parameter_groups``). Buffers start
at zero, so ``b = m * 0 + d`` is the first step's ``b = d`` exactly.

:meth:`PackedOptimizer.freeze` takes a diverged run out: its parameters, gradients and state are
zeroed and its learning rate held at 0, so its slice stays finite (0 * inf cannot turn into NaN
in a later step) and never moves again; no other slice reads it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .config import RunConfig
from .optim import learning_rate_factor

ADAMW_BETA2 = 0.999
ADAMW_EPS = 1e-8


def _column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-run values as a (K, 1) column in the dtype and on the device of ``like`` (PyTorch,
    too, rounds a Python float hyperparameter to the tensor's dtype inside the kernel)."""
    return torch.tensor(values, dtype=like.dtype).view(-1, 1).to(like.device)


class PackedOptimizer:
    """SGD or AdamW over the (K, n) views of ``parameters``, one hyperparameter row per run.

    ``decayed[i]`` says whether parameter i was more than 1-D in the runs' own models (weight
    decay then applies even where ``norm_weight_decay`` is False).
    """

    def __init__(
        self,
        parameters: Sequence[nn.Parameter],
        decayed: Sequence[bool],
        configs: Sequence[RunConfig],
        total_steps: int,
    ) -> None:
        self.configs = list(configs)
        self.count = len(configs)
        self.kind = configs[0].optimizer
        self.total_steps = total_steps
        self.parameters = list(parameters)
        self.views = [p.view(self.count, -1) for p in self.parameters]
        self.like = self.parameters[0]
        exempt = [c.weight_decay if c.norm_weight_decay else 0.0 for c in configs]
        self.weight_decays = [
            [c.weight_decay for c in configs] if decay else exempt for decay in decayed
        ]
        self.weight_decay_columns = [_column(w, self.like) for w in self.weight_decays]
        self.momentum = _column([c.momentum for c in configs], self.like)
        self.frozen = [False] * self.count
        self.steps_taken = 0
        self.first_moments = [torch.zeros_like(v) for v in self.views]
        self.second_moments = (
            [torch.zeros_like(v) for v in self.views] if self.kind == "adamw" else []
        )
        self.learning_rates = self.scheduled_learning_rates(0)

    def scheduled_learning_rates(self, step: int) -> list[float]:
        """Each run's learning rate at ``step`` (``LambdaLR``'s ``base * factor``); 0 if frozen."""
        return [
            0.0 if frozen else c.lr * learning_rate_factor(c.schedule, step, self.total_steps)
            for c, frozen in zip(self.configs, self.frozen, strict=True)
        ]

    def zero_grad(self) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every run, then the schedule's learning rates for the next step."""
        if self.kind == "sgd":
            self._sgd()
        else:
            self._adamw()
        self.steps_taken += 1
        self.learning_rates = self.scheduled_learning_rates(self.steps_taken)

    def _sgd(self) -> None:
        negative_lr = _column([-lr for lr in self.learning_rates], self.like)
        for view, parameter, decay, buffer in zip(
            self.views,
            self.parameters,
            self.weight_decay_columns,
            self.first_moments,
            strict=True,
        ):
            if parameter.grad is None:
                continue  # torch.optim.SGD skips it too (frozen, or outside the loss)
            # In place on the gradient (the step's last reader of it): an out-of-place direction
            # allocated a tensor the size of the parameter per parameter per step.
            direction = parameter.grad.view(self.count, -1).addcmul_(decay, view)
            buffer.mul_(self.momentum).add_(direction)
            view.addcmul_(negative_lr, buffer)

    def _adamw(self) -> None:
        step = self.steps_taken + 1
        rates = self.learning_rates
        betas = [c.momentum for c in self.configs]
        negative_step_size = _column(
            [-lr / (1 - beta**step) for lr, beta in zip(rates, betas, strict=True)], self.like
        )
        keep = _column([1 - beta for beta in betas], self.like)
        correction2 = math.sqrt(1 - ADAMW_BETA2**step)
        for view, parameter, decays, first, second in zip(
            self.views,
            self.parameters,
            self.weight_decays,
            self.first_moments,
            self.second_moments,
            strict=True,
        ):
            if parameter.grad is None:
                continue  # torch.optim.AdamW skips it too, weight decay included
            grad = parameter.grad.view(self.count, -1)
            view.mul_(_column([1 - lr * w for lr, w in zip(rates, decays, strict=True)], self.like))
            first.lerp_(grad, keep)
            second.mul_(ADAMW_BETA2).addcmul_(grad, grad, value=1 - ADAMW_BETA2)
            denominator = (second.sqrt() / correction2).add_(ADAMW_EPS)
            view.addcmul_(negative_step_size, first / denominator)

    @torch.no_grad()
    def freeze(self, index: int) -> None:
        """Stop run ``index`` for good: zero its slice of parameters, gradients and state."""
        self.frozen[index] = True
        self.learning_rates[index] = 0.0
        for view, parameter in zip(self.views, self.parameters, strict=True):
            view[index].zero_()
            if parameter.grad is not None:
                parameter.grad.view(self.count, -1)[index].zero_()
        for state in (*self.first_moments, *self.second_moments):
            state[index].zero_()
