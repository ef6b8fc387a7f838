"""Initializations of the ResNet, chosen by name (``RunConfig.init``).

- ``default``: PyTorch's initialization of every layer; the seed block unchanged.
- ``skipinit``: De & Smith 2020, "Batch Normalization Biases Residual Blocks Towards the
  Identity Function in Deep Networks". Each block's residual branch is multiplied by a
  learnable scalar initialized to 0 (:class:`~normlab.models.blocks.SkipInitBlock`), and every
  convolution gets He initialization, the standard the paper's networks use. PyTorch's default
  (``Var W = 1 / (3 fan_in)``) shrinks the signal by about 0.4 per layer along the path the
  network starts as (stem and projection shortcuts only); with it, ResNet-20 on digits stayed at
  chance for 10 epochs at lr 0.01 in 3 of 3 seeds, against about 95 % test accuracy with He
  initialization. Allowed with any normalization.
- ``fixup``: Zhang, Dauphin & Ma 2019, "Fixup Initialization: Residual Learning Without
  Normalization" (:class:`~normlab.models.blocks.FixupBlock`), applied by
  :func:`initialize_fixup`:

  1. the classification layer and the last layer of each residual branch start at 0;
  2. every other layer gets He initialization, and the weight layers inside residual branches
     are scaled by ``L ** (-1 / (2m - 2))`` (``L`` residual branches of ``m`` layers each);
  3. scalar biases (0) before each convolution, linear layer and element-wise activation, and
     a scalar multiplier (1) in every branch.

  The authors' CIFAR code also trains those scalars at a tenth of the learning rate; the
  optimizer does the same (``train/optim.py``, :func:`fixup_scalars`).

  Only with ``norm="none"``: Fixup replaces normalization. A norm after the zero-initialized
  last convolution would divide a constant by its (zero) spread, and a norm after the scaled
  convolutions undoes the ``L ** (-1 / (2m - 2))`` scaling, so the combination is refused.
"""

from __future__ import annotations

import torch
from torch import nn

from normlab.errors import NormlabError

from .blocks import FixupBlock, ScalarBias, SeedBlock, SkipInitBlock

INIT_BLOCKS: dict[str, type[SeedBlock]] = {
    "default": SeedBlock,
    "fixup": FixupBlock,
    "skipinit": SkipInitBlock,
}
INITS = tuple(INIT_BLOCKS)
"""Valid values of ``init``."""

INIT_DESCRIPTIONS = {
    "default": "PyTorch's initialization; the seed block unchanged",
    "fixup": "Zhang et al. 2019: zero last layers, scaled branches, scalar biases (norm none only)",
    "skipinit": "De & Smith 2020: He init, residual branch times a learnable scalar starting at 0",
}

FIXUP_NORMS = ("none",)
"""Normalizations ``fixup`` may be combined with."""


def check_init(init: str, norm: str) -> None:
    """Refuse an unknown ``init`` or one that cannot be combined with ``norm``."""
    if init not in INIT_BLOCKS:
        raise NormlabError(f"init={init!r}; valid: {', '.join(INITS)}")
    if init == "fixup" and norm not in FIXUP_NORMS:
        raise NormlabError(
            f"init='fixup' replaces normalization and needs norm='none', got norm={norm!r} "
            "(init='skipinit' works with any norm)"
        )


def block_class(init: str) -> type[SeedBlock]:
    """The residual block class of ``init``."""
    return INIT_BLOCKS[init]


def fixup_branch_scale(num_branches: int, layers_per_branch: int) -> float:
    """Fixup's factor ``L ** (-1 / (2m - 2))`` for the weight layers inside residual branches.

    Zhang et al. 2019, Section 3: with ``L`` branches of ``m`` layers, scaling the non-final
    branch layers by this factor keeps the update of the network output per SGD step ``O(lr)``
    independent of depth.
    """
    if num_branches < 1 or layers_per_branch < 2:
        raise NormlabError(
            f"fixup needs at least one branch of at least two layers, got "
            f"L={num_branches}, m={layers_per_branch}"
        )
    return num_branches ** (-1.0 / (2 * layers_per_branch - 2))


def he_normal_(layer: nn.Conv2d | nn.Linear) -> None:
    """He et al. 2015 initialization for ReLU networks: ``W ~ N(0, 2 / fan_in)``, bias 0.

    ``fan_in`` (input channels x kernel area) keeps the forward signal's second moment, the
    quantity Fixup's analysis scales. The authors' CIFAR code uses ``fan_out``; the two agree
    except in the first convolution of a stage, where channels double.
    """
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


@torch.no_grad()
def initialize_fixup(model: nn.Module, classifier: nn.Linear) -> None:
    """Apply Fixup's rules 1 and 2 to ``model`` (its scalars are created at 0 / 1 already).

    Every convolution (stem, branches, projection shortcuts) gets He initialization; in each
    :class:`~normlab.models.blocks.FixupBlock` the first convolution is then scaled by
    :func:`fixup_branch_scale` and the second (the branch's last layer) set to 0, weight and
    bias; ``classifier`` is set to 0, weight and bias.
    """
    blocks = [module for module in model.modules() if isinstance(module, FixupBlock)]
    he_initialize_convolutions(model)
    # Two weight layers per branch (the seed block's two convolutions): m = 2.
    scale = fixup_branch_scale(len(blocks), 2)
    for block in blocks:
        block.conv1.weight.mul_(scale)
        nn.init.zeros_(block.conv2.weight)
        nn.init.zeros_(block.conv2.bias)
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)


def he_initialize_convolutions(model: nn.Module) -> None:
    """:func:`he_normal_` on every convolution of ``model``."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            he_normal_(module)


def initialize(model: nn.Module, init: str, classifier: nn.Linear) -> None:
    """Initialize a freshly built ``model`` for ``init`` (``default`` keeps PyTorch's)."""
    if init == "skipinit":
        with torch.no_grad():
            he_initialize_convolutions(model)
    elif init == "fixup":
        initialize_fixup(model, classifier)


def fixup_scalars(model: nn.Module) -> list[nn.Parameter]:
    """Fixup's scalar biases and multipliers in ``model``; empty for other initializations."""
    return [
        parameter
        for module in model.modules()
        if isinstance(module, (FixupBlock, ScalarBias))
        for parameter in module.parameters(recurse=False)
    ]
