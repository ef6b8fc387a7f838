"""Synthetic store records for analysis and report tests (no training)."""

from __future__ import annotations

import numpy as np


def study_records(
    means: dict[tuple[str, int], float],
    seeds: int = 5,
    noise: float = 0.004,
    lrs: tuple[float, ...] = (0.01, 0.03, 0.1),
    seed: int = 0,
) -> list[dict]:
    """Records of a norm x batch-size study: at lr 0.03 each (norm, batch) cell has test
    accuracy ``means[cell]`` plus seed noise shared by every norm (paired design) and a small
    independent part; the other lrs are worse on val and test."""
    generator = np.random.default_rng(seed)
    shared = generator.normal(0.0, noise, size=seeds)
    records = []
    for (norm, batch), accuracy in means.items():
        for lr in lrs:
            penalty = 0.0 if lr == 0.03 else 0.05
            for s in range(seeds):
                test = accuracy - penalty + shared[s] + generator.normal(0.0, noise)
                records.append(
                    {
                        "run_id": f"{norm}-{batch}-{lr}-{s}",
                        "config": {"norm": norm, "batch_size": batch, "lr": lr, "seed": s},
                        "cell": {"norm": norm, "batch_size": batch},
                        "status": "done",
                        "val_acc": test + 0.001,
                        "test_acc": test,
                        "test_acc_batch_stats": test,
                        "train_loss": 0.1,
                        "train_acc": 0.99,
                        "wall_time": 1.0,
                    }
                )
    return records


def grid(values: dict[str, dict[int, float]]) -> dict[tuple[str, int], float]:
    return {(norm, batch): acc for norm, row in values.items() for batch, acc in row.items()}


BN_WORSE_SMALL = grid(
    {
        "bn": {2: 0.85, 4: 0.90, 16: 0.969, 64: 0.973},
        "gn": {2: 0.93, 4: 0.94, 16: 0.968, 64: 0.972},
        "ln": {2: 0.91, 4: 0.92, 16: 0.960, 64: 0.965},
    }
)
BN_ALWAYS_BEST = grid(
    {
        "bn": {2: 0.97, 4: 0.975, 16: 0.98, 64: 0.98},
        "gn": {2: 0.93, 4: 0.94, 16: 0.95, 64: 0.95},
        "ln": {2: 0.92, 4: 0.93, 16: 0.94, 64: 0.94},
    }
)
NO_DIFFERENCE = grid(
    {
        "bn": {2: 0.95, 4: 0.95, 16: 0.95, 64: 0.95},
        "gn": {2: 0.95, 4: 0.95, 16: 0.95, 64: 0.95},
        "ln": {2: 0.95, 4: 0.95, 16: 0.95, 64: 0.95},
    }
)


def seed_records(
    cells: dict[tuple[str, int], list[float | None]],
    lr: float = 0.03,
    val: dict[tuple[str, int, float], list[float | None]] | None = None,
) -> list[dict]:
    """Records with explicit per-seed test accuracies at ``lr`` (``None``: the seed diverged);
    validation accuracy equals test. ``val`` adds runs at other lrs: (norm, batch, lr) -> per-seed
    validation (and test) accuracy, ``None`` for a diverged run."""
    runs = {(norm, batch, lr): accs for (norm, batch), accs in cells.items()}
    runs.update(val or {})
    records = []
    for (norm, batch, rate), accuracies in runs.items():
        for s, accuracy in enumerate(accuracies):
            records.append(
                {
                    "run_id": f"{norm}-{batch}-{rate}-{s}",
                    "config": {"norm": norm, "batch_size": batch, "lr": rate, "seed": s},
                    "cell": {"norm": norm, "batch_size": batch},
                    "status": "done" if accuracy is not None else "diverged",
                    "val_acc": accuracy,
                    "test_acc": accuracy,
                    "test_acc_batch_stats": accuracy,
                    "train_loss": 0.1 if accuracy is not None else None,
                    "train_acc": 0.99 if accuracy is not None else None,
                    "wall_time": 1.0,
                }
            )
    return records


TUNING_SEED = 1000
"""Tuning seeds are 1000, 1001, ... under the adaptive protocol (evaluation seeds 0, 1, ...)."""


def adaptive_records(
    means: dict[tuple[str, int], float],
    rounds: tuple[int, ...] = (3, 2),
    tuning_seeds: int = 2,
    noise: float = 0.004,
    lrs: tuple[float, ...] = (0.01, 0.03, 0.1),
    best_lr: float = 0.03,
    tuning_test_offset: float = -0.2,
    wall_time: float = 2.0,
    seed: int = 0,
) -> list[dict]:
    """Records of an adaptive study: each (norm, batch) cell trains every lr of ``lrs`` with
    ``tuning_seeds`` tuning seeds (role "tune", round 0; validation best at ``best_lr``), then
    evaluation seeds at ``best_lr`` in rounds of ``rounds`` seeds (role "eval", round 1, 2, ...)
    whose test accuracy is ``means[cell]`` plus seed noise shared by every norm (paired) and a
    small independent part. Tuning runs' test accuracy is ``tuning_test_offset`` away, so a
    summary that reported them would be visibly wrong."""
    generator = np.random.default_rng(seed)
    evaluation_seeds = sum(rounds)
    shared = generator.normal(0.0, noise, size=evaluation_seeds)
    records = []
    for (norm, batch), accuracy in means.items():
        base = {"norm": norm, "batch_size": batch}
        for lr in lrs:
            for i in range(tuning_seeds):
                value = accuracy - (0.0 if lr == best_lr else 0.05) + generator.normal(0, noise)
                records.append(
                    _record(base, lr, TUNING_SEED + i, "tune", 0, value, value + tuning_test_offset)
                )
        seed_index = 0
        for round_number, count in enumerate(rounds, start=1):
            for _ in range(count):
                test = accuracy + shared[seed_index] + generator.normal(0.0, noise)
                record = _record(base, best_lr, seed_index, "eval", round_number, test, test)
                record["wall_time"] = wall_time
                records.append(record)
                seed_index += 1
    return records


def _record(cell, lr, seed, role, round_number, val, test):
    return {
        "run_id": f"{cell['norm']}-{cell['batch_size']}-{lr}-{seed}",
        "config": {**cell, "lr": lr, "seed": seed},
        "cell": dict(cell),
        "status": "done",
        "val_acc": val,
        "test_acc": test,
        "test_acc_batch_stats": test,
        "train_loss": 0.1,
        "train_acc": 0.99,
        "wall_time": 1.0,
        "role": role,
        "round": round_number,
    }
