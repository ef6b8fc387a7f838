"""Where a run trains: ``--device cpu|cuda|auto``, and the dataset moved there once."""

from __future__ import annotations

import dataclasses

import torch

from normlab.data import Dataset
from normlab.errors import NormlabError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda`` for a ``--device`` value: ``auto`` is ``cuda`` when
    ``torch.cuda.is_available()``, else ``cpu``; a ``cuda`` request without CUDA is refused."""
    if device not in DEVICES:
        raise NormlabError(f"--device {device!r}; valid: {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise NormlabError(
            "--device cuda: torch.cuda.is_available() is False on this machine (a CPU-only "
            f"torch {torch.__version__}, or no GPU visible); use --device cpu"
        )
    return device


def dataset_on(dataset: Dataset, device: str) -> Dataset:
    """``dataset`` with its tensors on ``device`` (the same object when they already are)."""
    if dataset.x_train.device.type == torch.device(device).type:
        return dataset
    moved = {
        field: getattr(dataset, field).to(device)
        for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    }
    return dataclasses.replace(dataset, **moved)
