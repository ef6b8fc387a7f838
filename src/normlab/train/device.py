"""Where a run trains: ``--device cpu|cuda|auto``, the dataset moved there once, and the
numerics settings normlab fixes on CUDA for reproducible runs (:func:`fix_numerics`)."""

from __future__ import annotations

import dataclasses
import os

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


TF32_ENV = "NORMLAB_TF32"
"""Environment variable: ``1`` lets CUDA matmuls and convolutions use TF32; unset or ``0``
(the default) keeps them in full float32."""


def tf32_allowed() -> bool:
    """Whether :data:`TF32_ENV` asks for TF32; a value other than ``0`` or ``1`` is refused."""
    value = os.environ.get(TF32_ENV, "0").strip()
    if value not in ("0", "1"):
        raise NormlabError(f"{TF32_ENV}={value!r}; valid: 0 (full float32, default) or 1 (TF32)")
    return value == "1"


def fix_numerics() -> dict[str, bool]:
    """Fix the CUDA settings that change a run's numbers, before training on a GPU; returns them.

    - TF32 off for matmuls and cuDNN convolutions (``torch.backends.cuda.matmul.allow_tf32``,
      ``torch.backends.cudnn.allow_tf32``) unless ``NORMLAB_TF32=1``: TF32 rounds the inputs of
      every product to a 10-bit mantissa (about 1e-3 relative), so packed and alone runs, and
      two GPUs, would differ by far more than float32 rounding; on Ampere and later cards it is
      several times faster, which is the user's trade to make.
    - cuDNN deterministic algorithms, no autotuning (``cudnn.deterministic = True``,
      ``cudnn.benchmark = False``): the autotuner picks algorithms by timing, so two processes
      may reduce in different orders; the deterministic ones are the cheap fix (the grouped
      convolutions of a pack have deterministic kernels).

    Setting these flags on a machine without CUDA changes nothing (they are read by CUDA kernels
    only), so a CPU process may call this too.
    """
    tf32 = tf32_allowed()
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return {
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
