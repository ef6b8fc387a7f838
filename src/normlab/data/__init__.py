"""Datasets (built-ins and files on disk), fixed splits, augmentation, and a run's data order."""

from .augment import augment_batch
from .datasets import (
    Dataset,
    balanced_subset,
    digits,
    from_arrays,
    from_splits,
    stratified_split,
    synthetic,
)
from .evaluation_order import EVALUATION_SEED, evaluation_batches, evaluation_permutation
from .fingerprint import changed_files, current_records, data_fingerprint, file_record
from .order import SAMPLERS, batches_per_epoch, check_sampler, epoch_order
from .registry import DATASETS, dataset_names, load_dataset, register_dataset
from .shapes import shapes

__all__ = [
    "DATASETS",
    "EVALUATION_SEED",
    "SAMPLERS",
    "Dataset",
    "augment_batch",
    "balanced_subset",
    "batches_per_epoch",
    "changed_files",
    "check_sampler",
    "current_records",
    "data_fingerprint",
    "dataset_names",
    "digits",
    "epoch_order",
    "evaluation_batches",
    "evaluation_permutation",
    "file_record",
    "from_arrays",
    "from_splits",
    "load_dataset",
    "register_dataset",
    "shapes",
    "stratified_split",
    "synthetic",
]
