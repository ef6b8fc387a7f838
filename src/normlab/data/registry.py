"""Where datasets come from: a registry of named builders, or a path whose format is detected.

``DATASETS`` maps a name to ``(builder, description)``; a builder takes keyword options and
returns a :class:`Dataset`. Users add their own entries from Python (directly or with
:func:`register_dataset`). :func:`load_dataset` also accepts a file or folder path
(:mod:`normlab.data.files`).

Options every source accepts, applied the same way everywhere:

- ``max_train_examples``: keep a class-balanced subset of this many training examples, seeded
  with the fixed split seed (every run sees the same subset);
- ``max_eval_examples``: the same for val and for test, each;
- ``val_fraction`` (default 0.1): the stratified share of train carved out as val when a file
  source has a test split but no val (and the val share when it has neither). Registered
  builders make their own splits (digits, synthetic and shapes: 60 / 20 / 20) and ignore it.

For a registered builder the subsets are taken after it has standardized, so its numbers
without these options never change; file sources subset first and standardize with the
statistics of the training examples they keep.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from normlab.errors import NormlabError

from .datasets import Dataset, digits, subset_dataset, synthetic
from .files import load_path, looks_like_path
from .shapes import shapes

Builder = Callable[..., Dataset]

COMMON_OPTIONS = ("max_train_examples", "max_eval_examples", "val_fraction")
"""Options :func:`load_dataset` accepts for every source."""

PATH_OPTIONS = COMMON_OPTIONS + ("size",)

DATASETS: dict[str, tuple[Builder, str]] = {
    "digits": (
        digits,
        "1x8x8, scikit-learn's bundled handwritten digits (1,797 images, 10 classes)",
    ),
    "synthetic": (
        synthetic,
        "1x8x8 by default, procedural seeded patterns + noise (for tests; size configurable)",
    ),
    "shapes": (
        shapes,
        "3x32x32, procedural shapes x textures under noise (6,000 images, 10 classes)",
    ),
}
"""name -> (builder, one-line description including the input shape)."""


def register_dataset(name: str, builder: Builder, description: str) -> None:
    """Add (or replace) the dataset ``name``: ``builder(**options)`` returns a :class:`Dataset`."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        raise NormlabError(f"dataset name must be a non-empty string without '/', got {name!r}")
    if not callable(builder):
        raise NormlabError(f"dataset {name!r}: builder must be callable, got {builder!r}")
    DATASETS[name] = (builder, str(description))


def dataset_names() -> list[str]:
    return list(DATASETS)


def load_dataset(source: str, **options: object) -> Dataset:
    """The dataset registered as ``source``, or read from the path ``source``.

    Unknown options are an error naming the option; see the module docstring for the options
    every source takes.
    """
    if source in DATASETS:
        return _build(source, options)
    if isinstance(source, str) and looks_like_path(source):
        unknown = sorted(set(options) - set(PATH_OPTIONS))
        if unknown:
            raise NormlabError(
                f"{source}: unknown option {unknown[0]!r}; valid: {', '.join(PATH_OPTIONS)}"
            )
        return load_path(source, options)
    raise NormlabError(
        f"unknown dataset {source!r}; valid names: {', '.join(DATASETS)}, or a path to "
        "CIFAR, an image folder or an .npz"
    )


def _build(name: str, options: dict[str, object]) -> Dataset:
    builder = DATASETS[name][0]
    max_train = options.pop("max_train_examples", None)
    max_eval = options.pop("max_eval_examples", None)
    options.pop("val_fraction", None)
    accepted = _parameters(builder)
    if accepted is not None:
        unknown = sorted(set(options) - accepted)
        if unknown:
            valid = ", ".join(sorted(accepted) + list(COMMON_OPTIONS))
            raise NormlabError(f"dataset {name!r}: unknown option {unknown[0]!r}; valid: {valid}")
    try:
        dataset = builder(**options)
    except TypeError as error:
        if accepted is not None:
            raise
        raise NormlabError(f"dataset {name!r}: bad option: {error}") from None
    if max_train is None and max_eval is None:
        return dataset
    return subset_dataset(dataset, max_train, max_eval)  # type: ignore[arg-type]


def _parameters(builder: Builder) -> set[str] | None:
    """Keyword names ``builder`` accepts; ``None`` when it takes ``**kwargs`` (or is opaque)."""
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):
        return None
    parameters = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
