"""Training: one run from a config (engine), its optimizer, evaluation and result records."""

from .config import OPTIMIZERS, SCHEDULES, RunConfig
from .engine import (
    build_model,
    check_config,
    model_build_options,
    model_norm_options,
    total_steps,
    train_run,
)
from .evaluate import STATISTICS_MODES, accuracy
from .model_ref import build_model_from_ref, check_model_ref, model_takes_norm
from .optim import build_optimizer, build_scheduler, parameter_groups
from .result import RUN_STATUSES, EpochRecord, RunResult
from .units import train_runs

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
    "build_model_from_ref",
    "build_optimizer",
    "build_scheduler",
    "check_config",
    "check_model_ref",
    "model_build_options",
    "model_norm_options",
    "model_takes_norm",
    "parameter_groups",
    "total_steps",
    "train_run",
    "train_runs",
]
