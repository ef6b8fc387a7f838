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
from .order import SAMPLERS, batches_per_epoch, check_sampler, epoch_order

__all__ = [
    "DATASETS",
    "SAMPLERS",
    "Dataset",
    "batches_per_epoch",
    "check_sampler",
    "dataset_names",
    "digits",
    "epoch_order",
    "from_arrays",
    "load_dataset",
    "stratified_split",
    "synthetic",
]
