"""Training: one run from a config (engine), its optimizer, evaluation and result records."""

from .config import OPTIMIZERS, SCHEDULES, RunConfig
from .engine import (
    build_model,
    check_config,
    model_norm_options,
    total_steps,
    train_run,
    train_runs,
)
from .evaluate import STATISTICS_MODES, accuracy
from .optim import build_optimizer, build_scheduler, parameter_groups
from .result import RUN_STATUSES, EpochRecord, RunResult

__all__ = [
    "OPTIMIZERS",
    "RUN_STATUSES",
    "SCHEDULES",
    "STATISTICS_MODES",
    "EpochRecord",
    "RunConfig",
    "RunResult",
    "accuracy",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "check_config",
    "model_norm_options",
    "parameter_groups",
    "total_steps",
    "train_run",
    "train_runs",
]
