"""In-memory image classification datasets with a fixed train / val / test split.

Every dataset is a :class:`Dataset`: float32 tensors (N, C, H, W) and int64 labels for each
split, standardized with statistics of the training split only. Val selects (learning rate),
test reports. Nothing is downloaded: ``digits`` ships with scikit-learn, ``synthetic`` is
generated from its seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from normlab.errors import NormlabError

SPLIT_SEED = 0
"""The split never depends on a run's seed: every run of every study sees the same split."""


@dataclass(frozen=True)
class Dataset:
    """Train / val / test tensors of one dataset, already standardized."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one example."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def describe(self) -> str:
        channels, height, width = self.input_shape
        sizes = self.sizes()
        return (
            f"{self.name}: {channels}x{height}x{width} images, {self.num_classes} classes, "
            f"{sizes['train']} train / {sizes['val']} val / {sizes['test']} test"
        )


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, float, float], seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a stratified train / val / test split: each class is split in ``fractions``."""
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise NormlabError(
            f"split fractions must be three positive numbers summing to 1, got {fractions}"
        )
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_train = int(round(fractions[0] * len(members)))
        n_val = int(round(fractions[1] * len(members)))
        parts[0].append(members[:n_train])
        parts[1].append(members[n_train : n_train + n_val])
        parts[2].append(members[n_train + n_val :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def from_arrays(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> Dataset:
    """Split ``images`` (N, C, H, W) and ``labels`` (N,) and standardize with train statistics.

    One scalar mean and standard deviation (over all training pixels) keep the images' relative
    contrast; per-pixel statistics would divide by zero on digits' always-blank border pixels.
    """
    images = np.asarray(images, dtype=np.float64)
    labels = np.asarray(labels)
    if images.ndim != 4 or len(images) != len(labels):
        raise NormlabError(
            f"{name}: expected images (N, C, H, W) and N labels, got {images.shape}, {labels.shape}"
        )
    _, codes = np.unique(labels, return_inverse=True)
    train, val, test = stratified_split(codes, fractions)
    mean = images[train].mean()
    std = images[train].std() or 1.0

    def tensor(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(((images[index] - mean) / std).astype(np.float32))
        return x, torch.from_numpy(codes[index].astype(np.int64))

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = map(tensor, (train, val, test))
    num_classes = int(codes.max()) + 1
    return Dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, num_classes)


def digits() -> Dataset:
    """scikit-learn's bundled handwritten digits: 1,797 grey 8x8 images, 10 classes.

    Split 60 / 20 / 20 stratified (1,078 / 359 / 360 images).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return from_arrays("digits", bunch.images[:, None, :, :], bunch.target)


def synthetic(
    num_examples: int = 600,
    num_classes: int = 4,
    channels: int = 1,
    size: int = 8,
    noise: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """Procedural images: each class a fixed random smooth pattern, each example pattern + noise.

    Learnable by a small ConvNet in a few epochs; ``noise`` sets the difficulty. Deterministic in
    ``seed``. For tests and quick experiments.
    """
    if num_examples < 5 * num_classes or num_classes < 2 or size < 2 or channels < 1:
        raise NormlabError(
            "synthetic: need num_classes >= 2, size >= 2, channels >= 1 and "
            f"num_examples >= 5 * num_classes, got {num_examples=}, {num_classes=}, {size=}, {channels=}"
        )
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((num_classes, channels, 3, 3))
    # Nearest-neighbour upsampling of a 3x3 grid gives patterns a convolution can pick up.
    rows = np.minimum(np.arange(size) * 3 // size, 2)
    prototypes = coarse[:, :, rows][:, :, :, rows]
    labels = np.arange(num_examples) % num_classes
    images = prototypes[labels] + noise * rng.standard_normal((num_examples, channels, size, size))
    return from_arrays("synthetic", images, labels)


DATASETS: dict[str, tuple[Callable[..., Dataset], str]] = {
    "digits": (digits, "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)"),
    "synthetic": (synthetic, "procedural seeded patterns + noise (for tests; size configurable)"),
}


def dataset_names() -> list[str]:
    return list(DATASETS)


def load_dataset(name: str, **options: object) -> Dataset:
    """Build the dataset ``name`` with its options; errors name the dataset and the option."""
    if name not in DATASETS:
        raise NormlabError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    build = DATASETS[name][0]
    try:
        return build(**options)
    except TypeError as error:
        raise NormlabError(f"dataset {name!r}: bad option: {error}") from None
