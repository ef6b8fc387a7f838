"""K runs' models as ONE packed model: each run in its own channel slice of every activation.

Module by module (the packer knows layers, not architectures): every run's model is built alone
with its own seed, then the K models are walked in step and each leaf layer is replaced by its
packed form; the containers and their ``forward`` code are the first model's, unchanged.

- ``nn.Conv2d`` (and weight-standardized ones): one convolution with ``groups = K * groups``
  over (N, K*C_in, H, W); run k's filters are output channels ``[k*C_out, (k+1)*C_out)``.
- ``nn.Linear``: block-diagonal, computed as a batched matrix product over the K runs; it
  returns logits (K, N, classes), one row block per run.
- Norms: as their registry entry declares (``norms/packed.py``).
- Dropout (:class:`~normlab.models.SeededDropout`): each slice multiplied by a mask drawn from
  its run's own generator with the run's own rate, the masks the run draws alone.
- Stateless layers (ReLU, pooling, identities): shared as they are (they act per channel).

Every tensor of the packed model is the K runs' tensors concatenated along the first dimension,
so ``tensor.view(K, -1)[k]`` is run k's and :meth:`PackedModel.unpack_into` writes it back.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from normlab.models import SeededDropout
from normlab.models.cifar_resnet import ShortcutA
from normlab.models.dropout import keep_mask
from normlab.norms import pack_norm, stack_layers, unstack_into


class PackedLinear(nn.Module):
    """K linear layers applied to their own slices of (N, K*C) features; output (K, N, O)."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.count = len(layers)
        self.in_features = layers[0].in_features
        self.out_features = layers[0].out_features
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        runs = x.view(x.shape[0], self.count, self.in_features).transpose(0, 1)
        return torch.baddbmm(self.bias.unsqueeze(1), runs, self.weight.transpose(1, 2))

    def extra_repr(self) -> str:
        return f"{self.count} x ({self.in_features} -> {self.out_features})"


class PackedDropout(nn.Module):
    """Per-slice inverted dropout: run k's slice of C channels with rate ``p_k`` and the masks of
    run k's generator (runs without dropout in this position get no mask and draw nothing)."""

    def __init__(self, layers: Sequence[nn.Module], channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.rates = [layer.p if isinstance(layer, SeededDropout) else 0.0 for layer in layers]
        self.generators = [getattr(layer, "generator", None) for layer in layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        shape = (x.shape[0], self.channels, *x.shape[2:])
        # Masks are drawn on the CPU from each run's generator (the run's own stream, whatever
        # the device), then moved as one tensor.
        masks = [
            keep_mask(shape, rate, generator, x.dtype)
            if rate > 0
            else torch.ones(shape, dtype=x.dtype)
            for rate, generator in zip(self.rates, self.generators, strict=True)
        ]
        return x * torch.cat(masks, dim=1).to(x.device)

    def extra_repr(self) -> str:
        return f"rates={self.rates}"


class PackedShortcutA(nn.Module):
    """K runs' option-A shortcuts (``models/cifar_resnet.py``): each run's slice subsampled and
    followed by its own ``out - in`` zero channels (a plain pad would append them all after
    the last run's slice)."""

    def __init__(self, layer: ShortcutA, count: int) -> None:
        super().__init__()
        self.count = count
        self.shortcut = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        runs = x.view(batch * self.count, channels // self.count, *x.shape[2:])
        out = self.shortcut(runs)
        return out.view(batch, -1, *out.shape[2:])


def _is_stateless(layer: nn.Module) -> bool:
    return not any(True for _ in layer.parameters()) and not any(True for _ in layer.buffers())


def _dropout_channels(model: nn.Module, name: str) -> int:
    """Channels of the activation a dropout at ``name`` sees: those of the layer before it."""
    channels = 0
    for other, module in model.named_modules():
        if other == name:
            return channels
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
    return channels


class PackedModel(nn.Module):
    """K models of the same architecture trained as one: input (N, K*C, H, W), logits (K, N, O).

    ``packing`` is the registry's declaration for the models' norm (``NormEntry.packing``).
    """

    def __init__(self, models: Sequence[nn.Module], packing: str) -> None:
        super().__init__()
        self.count = len(models)
        self.network = copy.deepcopy(models[0])
        self.stacked: list[str] = []
        """Names of the packed leaf layers that hold tensors (to unpack them)."""
        layers_by_model = [dict(model.named_modules()) for model in models]
        for name, first in models[0].named_modules():
            if any(True for _ in first.children()):
                continue
            layers = [layers[name] for layers in layers_by_model]
            packed = self._pack_leaf(name, layers, packing, models[0])
            if packed is not None:
                self.network.set_submodule(name, packed)

    def _pack_leaf(
        self, name: str, layers: list[nn.Module], packing: str, model: nn.Module
    ) -> nn.Module | None:
        if any(isinstance(layer, SeededDropout) for layer in layers):
            return PackedDropout(layers, _dropout_channels(model, name))
        if isinstance(layers[0], ShortcutA):
            return PackedShortcutA(layers[0], self.count)
        if _is_stateless(layers[0]):
            return None
        self.stacked.append(name)
        if isinstance(layers[0], nn.Conv2d):
            return stack_layers(layers, group_attributes=True)
        if isinstance(layers[0], nn.Linear):
            return PackedLinear(layers)
        return pack_norm(packing, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def stacked_parameters(self) -> dict[str, nn.Parameter]:
        """Every parameter of the packed network (K runs' tensors along the first dimension),
        by its name in a run's own model (the packed layers keep the names)."""
        return dict(self.network.named_parameters())

    def unpack_into(self, index: int, model: nn.Module) -> None:
        """Write run ``index``'s slice of every tensor into ``model`` (that run's own model)."""
        layers = dict(model.named_modules())
        for name in self.stacked:
            unstack_into(self.network.get_submodule(name), index, self.count, layers[name])

    @torch.no_grad()
    def reset_buffers(self, index: int, initial: dict[str, torch.Tensor]) -> None:
        """Put run ``index``'s slice of every buffer back to ``initial`` (a copy taken at build
        time): a diverged run's running statistics may hold inf or NaN."""
        for name, buffer in self.named_buffers():
            if buffer.ndim > 0:
                buffer.view(self.count, -1)[index].copy_(initial[name].view(self.count, -1)[index])
