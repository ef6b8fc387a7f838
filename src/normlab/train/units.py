"""The engine interface executors call: one unit of work, trained packed or alone.

Its own module because it sits above both engines: ``packed.py`` builds on ``engine.py``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from normlab.data import Dataset

from .config import RunConfig
from .engine import AfterTraining, train_run, weights_file
from .packed import train_packed
from .packed_func import PackRefused
from .result import RunResult

logger = logging.getLogger(__name__)


def train_runs(
    configs: Sequence[RunConfig],
    dataset: Dataset | None = None,
    *,
    device: str = "cpu",
    after_training: AfterTraining | None = None,
    weights_dir: Path | None = None,
    precise_examples: int | None = None,
) -> list[RunResult]:
    """Train one unit of work (the engine interface executors call): several compatible configs
    (``packed.pack_key``) as one packed model (``packed.train_packed``), one config alone
    (:func:`train_run`). One result per config, in order. ``after_training``: per-run
    diagnostics (see ``engine.AfterTraining``); ``weights_dir``: each finished run's final state
    dict is saved as ``weights_dir/<run_id>.pt``; ``precise_examples``: a pack computes its
    runs' PreciseBN test accuracies in one pass (``train_packed``; a run alone leaves it to the
    diagnostic)."""
    if len(configs) > 1:
        try:
            return train_packed(
                configs,
                dataset,
                weights_paths=[weights_file(weights_dir, config) for config in configs],
                after_training=after_training,
                device=device,
                precise_examples=precise_examples,
            )
        except PackRefused as refused:
            # Found before any step: the runs train alone, as they would have unpacked.
            logger.warning("%s; its %d runs train alone", refused, len(configs))
    return [
        dataclasses.replace(
            train_run(
                config,
                dataset,
                weights_path=weights_file(weights_dir, config),
                after_training=after_training,
                device=device,
            ),
            device=device,
        )
        for config in configs
    ]
