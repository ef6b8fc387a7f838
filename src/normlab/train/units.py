"""The engine interface executors call: one unit of work, trained packed or alone.

Its own module because it sits above both engines: ``packed.py`` builds on ``engine.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from normlab.data import Dataset

from .config import RunConfig
from .engine import train_run
from .packed import train_packed
from .result import RunResult


def train_runs(
    configs: Sequence[RunConfig], dataset: Dataset | None = None, *, device: str = "cpu"
) -> list[RunResult]:
    """Train one unit of work (the engine interface executors call): several compatible configs
    (``packed.pack_key``) as one packed model (``packed.train_packed``), one config alone
    (:func:`train_run`). One result per config, in order."""
    if len(configs) > 1:
        return train_packed(configs, dataset, device=device)
    return [
        dataclasses.replace(train_run(config, dataset, device=device), device=device)
        for config in configs
    ]
