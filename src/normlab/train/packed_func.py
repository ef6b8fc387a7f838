"""The general packer: K runs of ANY architecture as one model, through the model's own forward.

The channel packer (``packed_model.py``) rewrites layers it knows and runs the first model's
containers on (N, K*C, H, W); code in a ``forward`` that reads the channel axis (``torch.cat``
of branches, option-A shortcuts' zero channels, ``view`` to features) then mixes runs. Here the
K runs' parameters and buffers are stacked along a new first axis and the first model's module
runs under ``torch.vmap`` with ``torch.func.functional_call`` (the mechanism of ``torch.func``'s
model ensembling): every operation of the forward sees one run's tensors, and PyTorch's batching
rules lower it to one operation over the K runs. A convolution with batched input and weight
becomes one grouped convolution with ``groups = K * groups`` (the channel packer's kernel); a
training-mode batch norm with batched running statistics normalizes each run by its own batch
and updates each run's statistics in place (checked in float64 against K separate modules:
``tests/train/test_packed_func.py``).

Randomness: vmap draws one stream for the K runs, not each run's own. Dropout layers are
replaced, before functionalizing, by :class:`RunDropout`, which draws each run's mask as the run
draws it alone and hands run k its own through an index batched over the runs:

- :class:`~normlab.models.SeededDropout`: from the run's dropout generator
  (``models/dropout.py``), as the channel packer's ``PackedDropout``;
- plain ``nn.Dropout`` (user models): alone, it draws ``bernoulli_(1 - p)`` from the global
  stream, which nothing else reads after the model is built (data order and augmentation have
  generators of their own); here from a generator holding the global state the run's build left
  (on the CPU; a CUDA run alone draws from the CUDA stream instead).

Any other random operation in a forward makes vmap raise (``randomness="error"``), and the pack
fails with a :class:`NormlabError` naming it rather than train with shared noise.

Norms whose registry entry sets ``vmap_problem`` (they keep Python state across steps or read
the autograd graph) are never given to this packer.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from normlab.errors import NormlabError
from normlab.models import SeededDropout
from normlab.models.dropout import keep_mask


class PackRefused(NormlabError):
    """The models of a pack cannot run as one under vmap (found by :func:`vmap_problem`): its
    runs train alone (``units.train_runs``)."""


def vmap_problem(packed: FunctionalPackedModel, x: torch.Tensor) -> str | None:
    """Why ``packed`` cannot train on inputs like ``x`` (N, K*C, *spatial), or None.

    A training-mode forward of a copy (the copy's buffers move and its dropout generators
    advance, not the pack's): the registry flags the zoo's norms vmap cannot run
    (``NormEntry.vmap_problem``), but a user's layer may call ``.item()``, draw random numbers
    or use a custom ``autograd.Function`` without ``setup_context``, which vmap refuses.
    """
    probe = copy.deepcopy(packed).train()
    try:
        probe(x)
    except (RuntimeError, NormlabError, NotImplementedError) as error:
        return str(error).splitlines()[0]
    return None


class RunDropout(nn.Module):
    """Inverted dropout inside the vmapped forward, each run's mask its own (see the module doc).

    ``generators[k]`` is run k's stream; ``seeded[k]`` says whether the run's layer was a
    :class:`SeededDropout` (``keep_mask``) or a plain ``nn.Dropout`` (``bernoulli_``). ``run`` is
    set by :class:`FunctionalPackedModel` for each forward: the run index, batched over runs.
    """

    def __init__(
        self,
        rates: Sequence[float],
        generators: Sequence[torch.Generator | None],
        seeded: Sequence[bool],
    ) -> None:
        super().__init__()
        self.rates = list(rates)
        self.generators = list(generators)
        self.seeded = list(seeded)
        self.run: torch.Tensor | None = None

    def _mask(self, k: int, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        rate = self.rates[k]
        if rate == 0.0:
            return torch.ones(shape, dtype=dtype)
        if self.seeded[k]:
            return keep_mask(shape, rate, self.generators[k], dtype)
        noise = torch.empty(shape, dtype=dtype).bernoulli_(1 - rate, generator=self.generators[k])
        return noise.div_(1 - rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not any(self.rates):
            return x
        if self.run is None:
            raise RuntimeError("RunDropout called outside FunctionalPackedModel.forward")
        # Drawn with the transform switched off: vmap (randomness="error") refuses any random
        # operation, even one on unbatched tensors from an explicit generator.
        with torch._C._DisableFuncTorch():
            masks = torch.stack([self._mask(k, x.shape, x.dtype) for k in range(len(self.rates))])
        return x * masks.to(x.device)[self.run]

    def extra_repr(self) -> str:
        return f"rates={self.rates}"


def _dropout_layer(layers: Sequence[nn.Module], plain: Sequence[torch.Generator]) -> RunDropout:
    seeded = [isinstance(layer, SeededDropout) for layer in layers]
    generators = [
        layer.generator if is_seeded else plain[k]  # type: ignore[union-attr]
        for k, (layer, is_seeded) in enumerate(zip(layers, seeded, strict=True))
    ]
    return RunDropout([float(layer.p) for layer in layers], generators, seeded)


class FunctionalPackedModel(nn.Module):
    """K models of one architecture as stacked tensors: input (N, K*C, *spatial), logits (K, N, O).

    The input layout and the output are those of :class:`~normlab.train.packed_model.PackedModel`
    (``packed_data`` and ``packed_eval`` serve both). ``rng_states[k]``: the global RNG state
    right after run k's model was built (the stream its plain ``nn.Dropout`` layers draw from
    alone); None when the models hold no plain dropout.
    """

    def __init__(
        self, models: Sequence[nn.Module], rng_states: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__()
        self.count = len(models)
        template = copy.deepcopy(models[0])
        plain = [
            torch.Generator().set_state(state) if rng_states is not None else None
            for state in (rng_states or [None] * self.count)
        ]
        by_model = [dict(model.named_modules()) for model in models]
        dropouts: list[RunDropout] = []
        for name, module in models[0].named_modules():
            if type(module) in (nn.Dropout, SeededDropout):
                layers = [modules[name] for modules in by_model]
                if rng_states is None and not all(isinstance(m, SeededDropout) for m in layers):
                    raise NormlabError(f"packing {name}: plain nn.Dropout needs rng_states")
                dropout = _dropout_layer(layers, plain)  # type: ignore[arg-type]
                template.set_submodule(name, dropout)
                dropouts.append(dropout)
        # Not a submodule: its own tensors are never used (functional_call replaces them all).
        object.__setattr__(self, "template", template)
        object.__setattr__(self, "dropouts", dropouts)
        object.__setattr__(self, "batched_outputs", {})
        self.global_dropout = any(
            rate > 0 and not seeded
            for dropout in dropouts
            for rate, seeded in zip(dropout.rates, dropout.seeded, strict=True)
        )
        """Whether some run's plain ``nn.Dropout`` draws masks (from the CPU global stream's
        state: exact for runs alone on the CPU only)."""
        self.parameter_names = [name for name, _ in models[0].named_parameters()]
        self.buffer_names = [
            name for name, buffer in models[0].named_buffers() if buffer is not None
        ]
        own = [dict(model.named_parameters()) for model in models]
        self.stacked = nn.ParameterList(
            nn.Parameter(
                torch.stack([p[name].detach() for p in own]),
                requires_grad=own[0][name].requires_grad,
            )
            for name in self.parameter_names
        )
        buffers = [dict(model.named_buffers()) for model in models]
        self.shared_buffers: list[str] = []
        """0-d buffers equal in every run (step counters: every run of a pack takes the same
        steps), kept unbatched so that a norm may read them as Python numbers."""
        for i, name in enumerate(self.buffer_names):
            tensors = [b[name].detach() for b in buffers]
            if tensors[0].ndim == 0 and all(torch.equal(t, tensors[0]) for t in tensors):
                self.shared_buffers.append(name)
                self.register_buffer(f"buffer_{i}", tensors[0].clone())
            else:
                self.register_buffer(f"buffer_{i}", torch.stack(tensors))

    def stacked_parameters(self) -> dict[str, nn.Parameter]:
        """Each parameter of a run's own model (by its name there), stacked (K, *shape)."""
        return dict(zip(self.parameter_names, self.stacked, strict=True))

    def stacked_buffers(self) -> dict[str, torch.Tensor]:
        """Each buffer of a run's own model (by its name there), stacked (K, *shape)."""
        return {
            name: getattr(self, f"buffer_{i}")
            for i, name in enumerate(self.buffer_names)
            if name not in self.shared_buffers
        }

    def shared_buffer_values(self) -> dict[str, torch.Tensor]:
        """The 0-d buffers every run shares (by their names in a run's own model)."""
        return {
            name: getattr(self, f"buffer_{i}")
            for i, name in enumerate(self.buffer_names)
            if name in self.shared_buffers
        }

    def layer_modules(self) -> list[nn.Module]:
        """The modules the forward runs (one run's layout; tensors are the stacked ones)."""
        return list(self.template.modules())

    def train(self, mode: bool = True) -> FunctionalPackedModel:
        super().train(mode)
        self.template.train(mode)
        return self

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        super()._apply(fn, recurse)
        self.template._apply(fn, recurse)
        return self

    def forward(
        self, x: torch.Tensor, outputs: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Logits (K, N, O) of the runs' inputs (N, K*C, ...). ``outputs``: tensors (K, ...) a
        layer's hook may write run k's values into during the call, from
        :attr:`batched_outputs` (vmap lets a value leave the transform only through a tensor
        batched over the runs; the PreciseBN pass collects statistics that way)."""
        runs = x.view(x.shape[0], self.count, x.shape[1] // self.count, *x.shape[2:])
        index = torch.arange(self.count, device=x.device)

        shared = self.shared_buffer_values()

        def one_run(
            parameters: dict[str, torch.Tensor],
            buffers: dict[str, torch.Tensor],
            inputs: torch.Tensor,
            run: torch.Tensor,
            batched_outputs: dict[str, torch.Tensor],
        ) -> torch.Tensor:
            for dropout in self.dropouts:
                dropout.run = run
            object.__setattr__(self, "batched_outputs", batched_outputs)
            return functional_call(self.template, (parameters, buffers, shared), (inputs,))

        try:
            return vmap(one_run, in_dims=(0, 0, 1, 0, 0), randomness="error")(
                self.stacked_parameters(), self.stacked_buffers(), runs, index, outputs or {}
            )
        except RuntimeError as error:
            if "randomness" in str(error):
                raise NormlabError(
                    "the model draws random numbers in its forward outside nn.Dropout: its runs "
                    f"cannot share a pack (train them alone); {error}"
                ) from None
            raise
        finally:
            object.__setattr__(self, "batched_outputs", {})
            for dropout in self.dropouts:
                dropout.run = None

    @torch.no_grad()
    def unpack_into(self, index: int, model: nn.Module) -> None:
        """Write run ``index``'s slice of every tensor into ``model`` (that run's own model)."""
        tensors = dict(model.named_parameters()) | dict(model.named_buffers())
        for name, stacked in (self.stacked_parameters() | self.stacked_buffers()).items():
            tensors[name].copy_(stacked[index])
        for name, value in self.shared_buffer_values().items():
            tensors[name].copy_(value)

    @torch.no_grad()
    def reset_buffers(self, index: int, initial: dict[str, torch.Tensor]) -> None:
        """Put run ``index``'s slice of every buffer back to ``initial`` (a copy taken at build
        time): a diverged run's running statistics may hold inf or NaN."""
        for name, buffer in self.named_buffers():
            if buffer.ndim > 0:
                buffer[index].copy_(initial[name][index])
