"""Plain records a run produces: what the store writes and analysis reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

RUN_STATUSES = ("pending", "running", "done", "diverged", "failed")


@dataclass(frozen=True)
class EpochRecord:
    """Metrics at the end of one epoch."""

    epoch: int
    train_loss: float
    train_acc: float
    val_acc: float
    lr: float


@dataclass(frozen=True)
class RunResult:
    """Outcome of one run. Accuracies are None when the run did not finish (diverged/failed)."""

    run_id: str
    status: str
    test_acc: float | None = None
    """Test accuracy in eval mode (running statistics)."""
    test_acc_batch_stats: float | None = None
    """Test accuracy with batch statistics (train-mode norms, training batch size)."""
    val_acc: float | None = None
    """Final validation accuracy (selects the learning rate)."""
    train_loss: float | None = None
    """Mean training loss of the last epoch."""
    train_acc: float | None = None
    steps: int = 0
    wall_time: float = 0.0
    images_per_sec: float = 0.0
    epochs: list[EpochRecord] = field(default_factory=list)
    error: str | None = None
    """Why it diverged (step and loss) or the traceback of a failure."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
