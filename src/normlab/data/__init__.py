"""Datasets (bundled digits, synthetic), fixed splits, and the seeded data order of a run."""

from .datasets import (
    DATASETS,
    Dataset,
    dataset_names,
    digits,
    from_arrays,
    load_dataset,
    stratified_split,
    synthetic,
)
from .order import batches_per_epoch, epoch_order

__all__ = [
    "DATASETS",
    "Dataset",
    "batches_per_epoch",
    "dataset_names",
    "digits",
    "epoch_order",
    "from_arrays",
    "load_dataset",
    "stratified_split",
    "synthetic",
]
