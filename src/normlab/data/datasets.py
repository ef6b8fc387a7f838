"""In-memory image classification datasets with a fixed train / val / test split.

Every dataset is a :class:`Dataset`: float32 tensors (N, C, H, W) and int64 labels for each
split, standardized with statistics of the training split only. Val selects (learning rate),
test reports. Nothing is downloaded: ``digits`` ships with scikit-learn, ``synthetic`` is
generated from its seed, files on disk are read by :mod:`normlab.data.files` and
:mod:`normlab.data.cifar`.

Two ways to build one:

- :func:`from_arrays` (the built-ins ``digits`` and ``synthetic``): one pool of examples split
  60 / 20 / 20, one *scalar* mean and standard deviation. Their numbers must never change.
- :func:`from_splits` (every new source): given train and optionally val / test arrays, carve
  the missing splits stratified, subset them class-balanced, and standardize *per channel*
  (mean and std of each channel over the training pixels), the usual practice for natural
  images (e.g. CIFAR, He et al. 2016). uint8 images are converted chunk by chunk, so a whole
  CIFAR training set (50000x3x32x32) never exists as float64.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    files: tuple[tuple[str, int, str], ...] = ()
    """(path, size in bytes, sha256 hex) of every data file read, sorted; empty for built-ins."""

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


def balanced_subset(labels: np.ndarray, count: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """Sorted indices of ``count`` examples, as evenly spread over the classes as they allow.

    The classes are shuffled (seeded) and their shuffled members read round-robin, one of each
    class per round; the first ``count`` of that stream are kept. So two classes differ by at
    most one example unless the smaller one is exhausted (water-filling), and the subset of a
    given ``count`` is the same in every run.
    """
    labels = np.asarray(labels)
    if count >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels))
    members = [rng.permutation(np.flatnonzero(labels == label)) for label in classes]
    # Row r of the table is round r; reading it row by row skips the holes of exhausted classes.
    table = np.full((max(len(m) for m in members), len(members)), -1, dtype=np.int64)
    for column, indices in enumerate(members):
        table[: len(indices), column] = indices
    stream = table.ravel()
    return np.sort(stream[stream >= 0][:count])


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


Split = tuple[np.ndarray, np.ndarray]
"""Images (N, C, H, W), uint8 or float, and N integer labels."""

STANDARDIZE_CHUNK = 1024
"""Examples converted to floating point at a time (a CIFAR chunk in float64 is 25 MB)."""

TEST_FRACTION = 0.2
"""Share of each class held out for test when a source has no test split of its own."""


def from_splits(
    name: str,
    train: Split,
    test: Split | None = None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = TEST_FRACTION,
    max_train_examples: int | None = None,
    max_eval_examples: int | None = None,
    files: tuple[tuple[str, int, str], ...] = (),
) -> Dataset:
    """A :class:`Dataset` from a source's own splits, standardized per channel on train.

    Without ``test``, the examples are split stratified ``(1 - val_fraction - test_fraction,
    val_fraction, test_fraction)``; with it, a stratified ``val_fraction`` of each training class
    becomes val. Then ``max_train_examples`` / ``max_eval_examples`` keep a class-balanced seeded
    subset (:func:`balanced_subset`) of train and of val and test each, and each channel c is
    standardized ``x[:, c] = (x[:, c] - mean_c) / std_c`` with the mean and (population) standard
    deviation of channel c over the pixels of the kept training images. Labels are mapped to
    0..K-1 in sorted order of the training labels; a test label unseen in train is an error.
    ``name`` (a file or folder for file sources) is named in every error.
    """
    x_train, y_train = _check_split(name, "train", train)
    upper = 1.0 if test is not None else 1.0 - test_fraction
    numeric = isinstance(val_fraction, (int, float)) and not isinstance(val_fraction, bool)
    if not numeric or not 0.0 < val_fraction < upper:
        raise NormlabError(f"{name}: val_fraction must be in (0, {upper:g}), got {val_fraction!r}")
    classes = np.unique(y_train)
    codes = np.searchsorted(classes, y_train)
    check_limits(name, len(classes), max_train_examples, max_eval_examples)
    if test is None:
        fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
        train_index, val_index, test_index = stratified_split(codes, fractions)
        x_test, test_codes = x_train, codes
    else:
        x_test, y_test = _check_split(name, "test", test)
        unseen = np.setdiff1d(np.unique(y_test), classes)
        if len(unseen):
            raise NormlabError(f"{name}: test labels {unseen[:5].tolist()} never occur in train")
        test_codes = np.searchsorted(classes, y_test)
        train_index, val_index = _carve(codes, val_fraction)
        test_index = np.arange(len(test_codes))
    if max_train_examples is not None:
        train_index = train_index[balanced_subset(codes[train_index], max_train_examples)]
    if max_eval_examples is not None:
        val_index = val_index[balanced_subset(codes[val_index], max_eval_examples, SPLIT_SEED + 1)]
        test_index = test_index[
            balanced_subset(test_codes[test_index], max_eval_examples, SPLIT_SEED + 2)
        ]
    for split, index in (("train", train_index), ("val", val_index), ("test", test_index)):
        if len(index) == 0:
            raise NormlabError(f"{name}: the {split} split is empty; the source is too small")
    train_images = x_train[train_index]
    mean, std = channel_statistics(train_images)

    def labels(split_codes: np.ndarray, index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(split_codes[index].astype(np.int64))

    return Dataset(
        name,
        standardize(train_images, mean, std),
        labels(codes, train_index),
        standardize(x_train[val_index], mean, std),
        labels(codes, val_index),
        standardize(x_test[test_index], mean, std),
        labels(test_codes, test_index),
        len(classes),
        tuple(sorted(files)),
    )


def _check_split(name: str, split: str, arrays: Split) -> Split:
    images, labels = np.asarray(arrays[0]), np.asarray(arrays[1])
    if images.ndim != 4:
        raise NormlabError(f"{name}: {split} images must be (N, C, H, W), got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise NormlabError(
            f"{name}: {len(images)} {split} images but labels of shape {labels.shape}"
        )
    if len(labels) == 0:
        raise NormlabError(f"{name}: no {split} examples")
    if labels.dtype.kind not in "iu":
        raise NormlabError(f"{name}: {split} labels must be integers, got dtype {labels.dtype}")
    return images, labels


def _carve(codes: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (rest, carved) indices: ``round(fraction * n)`` of each class's n go to carved."""
    rng = np.random.default_rng(SPLIT_SEED)
    rest, carved = [], []
    for label in np.unique(codes):
        members = rng.permutation(np.flatnonzero(codes == label))
        count = int(round(fraction * len(members)))
        carved.append(members[:count])
        rest.append(members[count:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(carved))


def check_limits(
    name: str, num_classes: int, max_train_examples: object, max_eval_examples: object
) -> None:
    """Refuse a subset size that is not an int or leaves a class out of a split."""
    for option, value in (
        ("max_train_examples", max_train_examples),
        ("max_eval_examples", max_eval_examples),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < num_classes:
            raise NormlabError(
                f"{name}: {option} must be an integer >= the number of classes "
                f"({num_classes}) or None, got {value!r}"
            )


def channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std of (N, C, H, W) images, float64, two passes in chunks.

    Two passes (mean, then squared deviations) avoid the cancellation of E[x^2] - E[x]^2; a
    channel with zero spread gets std 1 so that it maps to zeros instead of NaN.
    """
    channels = images.shape[1]
    count = images.shape[0] * images.shape[2] * images.shape[3]
    total = np.zeros(channels)
    for start in range(0, len(images), STANDARDIZE_CHUNK):
        chunk = images[start : start + STANDARDIZE_CHUNK].astype(np.float64)
        total += chunk.sum(axis=(0, 2, 3))
    mean = total / count
    squares = np.zeros(channels)
    for start in range(0, len(images), STANDARDIZE_CHUNK):
        chunk = images[start : start + STANDARDIZE_CHUNK].astype(np.float64)
        squares += ((chunk - mean[:, None, None]) ** 2).sum(axis=(0, 2, 3))
    std = np.sqrt(squares / count)
    std[std == 0] = 1.0
    return mean, std


def standardize(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """float32 tensor ``(images - mean_c) / std_c``, converted chunk by chunk."""
    out = np.empty(images.shape, dtype=np.float32)
    shift, scale = mean[:, None, None], std[:, None, None]
    for start in range(0, len(images), STANDARDIZE_CHUNK):
        chunk = images[start : start + STANDARDIZE_CHUNK].astype(np.float64)
        out[start : start + STANDARDIZE_CHUNK] = (chunk - shift) / scale
    return torch.from_numpy(out)


def subset_dataset(
    dataset: Dataset, max_train_examples: int | None, max_eval_examples: int | None
) -> Dataset:
    """``dataset`` with class-balanced seeded subsets of its splits (statistics unchanged).

    For the registered builders, which standardize before this is applied: their tensors (and
    numbers) without the options stay exactly as they were.
    """
    check_limits(dataset.name, dataset.num_classes, max_train_examples, max_eval_examples)
    splits = {}
    for split, limit, seed in (
        ("train", max_train_examples, SPLIT_SEED),
        ("val", max_eval_examples, SPLIT_SEED + 1),
        ("test", max_eval_examples, SPLIT_SEED + 2),
    ):
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        if limit is not None:
            keep = torch.from_numpy(balanced_subset(y.numpy(), limit, seed))
            x, y = x[keep], y[keep]
        splits[f"x_{split}"], splits[f"y_{split}"] = x, y
    return replace(dataset, **splits)


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
