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


@dataclass
class TrainingTrace:
    """What a run recorded step by step, handed to an ``after_training`` callback.

    ``step_losses[t]`` is the mini-batch loss before update t (the loss that ended a diverged
    run included, so its last entry is the divergent one); ``grad_norms[t]`` the global L2
    gradient norm after ``backward()`` of update t, before any clipping
    (:func:`normlab.train.gradients.global_gradient_norm`).
    """

    step_losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    finished: bool = False
    """The run ended as ``done`` (not diverged): the model holds its final, finite weights."""
    final_train_loss: float | None = None
    """Mean training loss of the last epoch (None when the run did not finish)."""
    final_train_acc: float | None = None
    final_train_examples: int | None = None
    """Examples of the last epoch, over which ``final_train_acc`` was counted (collapse is
    judged against a binomial band for this many)."""
    test_acc: float | None = None
    """The run's test accuracy with running statistics (as in its result), when finished."""
    test_acc_batch_stats: float | None = None
    """... and with batch statistics at the training batch size: a diagnostic reuses both
    instead of paying for the batch-statistics pass twice."""
    precise_test_acc: float | None = None
    """Test accuracy after PreciseBN, when the packed engine computed it for the whole pack
    (``train_packed(precise_examples=...)``): the ``gap`` diagnostic then skips its own pass."""
    precise_seconds: float | None = None
    """The run's share (1/K) of that pack-wide PreciseBN pass."""
    precise_examples: int | None = None
    """Training examples the PreciseBN pass went over."""


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
    pack_size: int = 1
    """Runs trained together as one packed model (1: trained alone)."""
    device: str = "cpu"
    """Where it trained (``cpu`` or ``cuda``)."""
    collapsed: bool | None = None
    """Finished at chance (last epoch's train accuracy within a binomial band of 1/classes,
    ``train.collapse``); None when not judged (a run that did not finish)."""
    diagnostics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Diagnostic records by kind (``gap``, ``stability``, ``noise``, ``variance_shift``), plain
    JSON-able dicts; the store keeps one row per kind."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
