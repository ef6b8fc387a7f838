"""What ``diagnose`` and ``doctor`` share: the user's data and model from the command line, a
checkpoint loaded safely, and JSON / one-line-error output."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from normlab.data import DATASETS, Dataset, load_dataset
from normlab.errors import NormlabError
from normlab.train import check_model_ref
from normlab.train.model_ref import absolute_ref


def data_from(source: str) -> Dataset:
    """``--data``: a dataset name or a path (as ``normlab run --data``)."""
    if source not in DATASETS and not Path(source).expanduser().exists():
        raise NormlabError(
            f"--data {source}: no such file or folder, and not a dataset name "
            f"({', '.join(DATASETS)})"
        )
    return load_dataset(source if source in DATASETS else str(Path(source).expanduser().resolve()))


def model_ref_from(ref: str) -> str:
    """``--model``: a built-in name, ``pkg.module:factory`` or ``file.py:factory``, checked."""
    try:
        check_model_ref(ref)
    except NormlabError as error:
        raise NormlabError(f"--model {ref}: {error}") from None
    return absolute_ref(ref)


def load_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save``, loaded with ``weights_only=True`` (no code runs)."""
    file = Path(path)
    if not file.is_file():
        raise NormlabError(f"--checkpoint {path}: no such file")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # whatever torch raises for a file that is not a state dict
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NormlabError(f"--checkpoint {path}: cannot load it as weights ({first})") from None
    if not isinstance(state, dict):
        raise NormlabError(
            f"--checkpoint {path}: expected a state dict, got {type(state).__name__}"
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise NormlabError(
                f"--checkpoint {path}: expected a state dict (names -> tensors), found key "
                f"{key!r} ({type(key).__name__}) -> {type(value).__name__}"
            )
    return state


def load_into(model: nn.Module, state: dict[str, torch.Tensor], path: str) -> nn.Module:
    """``model`` with ``state`` loaded; a checkpoint that does not fit is a one-line error."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise NormlabError(f"--checkpoint {path}: does not fit the model ({first})") from None
    return model


def to_json(value: Any) -> str:
    """JSON of plain records; non-finite floats become null (JSON has no NaN)."""
    return json.dumps(_finite(value), indent=2, sort_keys=True)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
