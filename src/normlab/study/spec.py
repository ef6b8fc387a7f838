"""A study as a value: TOML -> validated frozen dataclasses, parsed once and passed down.

A study crosses *factors* (each a list of levels) over *seeds*, under a *budget* (equal epochs or
equal steps) and a *learning-rate protocol*:

- ``tuned``: every cell (all factors except lr and seed) trains each lr of a log-spaced grid with
  every seed; the lr with the best mean validation accuracy is selected, its test accuracy
  reported. With ``grid_scaling = "sqrt"`` the grid is centred per batch size at
  ``center * sqrt(batch_size / base_batch_size)``.
- ``scaled``: ``lr = base_lr * (batch_size / base_batch_size) ** power`` (linear: 1, sqrt: 0.5).
- ``fixed``: ``lr = base_lr`` everywhere.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from normlab.errors import NormlabError
from normlab.train import RunConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FACTOR_KEYS = (
    "norm",
    "batch_size",
    "weight_decay",
    "norm_weight_decay",
    "dropout",
    "dropout_position",
    "momentum",
    "optimizer",
    "init",
    "schedule",
)
"""Run-config fields a study may vary; ``lr`` and ``seed`` are set by the protocol and seeds."""

LR_MODES = ("tuned", "scaled", "fixed")
SCALING_RULES = {"linear": 1.0, "sqrt": 0.5, "none": 0.0}


@dataclass(frozen=True)
class LrProtocol:
    """How each run's learning rate is chosen."""

    mode: str = "tuned"
    """``tuned`` (grid, selected on val), ``scaled`` (from a base batch) or ``fixed``."""
    grid: tuple[float, ...] = ()
    """tuned: explicit lr values; empty means ``points`` values spaced ``spacing`` around ``center``."""
    center: float = 0.1
    """tuned: centre of the generated grid at ``base_batch_size``."""
    points: int = 3
    """tuned: size of the generated grid."""
    spacing: float = 3.0
    """tuned: ratio between neighbouring grid values."""
    grid_scaling: str = "sqrt"
    """tuned: how the grid moves with batch size: ``sqrt``, ``linear`` or ``none``."""
    base_lr: float = 0.1
    """scaled / fixed: learning rate at ``base_batch_size``."""
    base_batch_size: int = 32
    """Batch size at which ``center`` / ``base_lr`` apply."""
    rule: str = "linear"
    """scaled: ``linear`` or ``sqrt``."""

    def learning_rates(self, batch_size: int) -> tuple[float, ...]:
        """The lr values a cell with ``batch_size`` trains (one unless tuned)."""
        ratio = batch_size / self.base_batch_size
        if self.mode == "fixed":
            return (self.base_lr,)
        if self.mode == "scaled":
            return (_round(self.base_lr * ratio ** SCALING_RULES[self.rule]),)
        scale = ratio ** SCALING_RULES[self.grid_scaling]
        if self.grid:
            return tuple(_round(lr * scale) for lr in self.grid)
        offsets = [i - (self.points - 1) / 2 for i in range(self.points)]
        return tuple(_round(self.center * scale * self.spacing**o) for o in offsets)


@dataclass(frozen=True)
class StudySpec:
    """A whole study: what to vary, what to hold fixed, how to pick learning rates."""

    name: str = "study"
    """Shown in reports."""
    base: RunConfig = field(default_factory=RunConfig)
    """Values of every run-config field a factor does not vary (dataset, model, budget ...)."""
    factors: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Factor name -> levels; the study is their full cross product."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds; seed s gives every norm the same data order (paired design)."""
    lr: LrProtocol = field(default_factory=LrProtocol)
    """Learning-rate protocol."""
    exclude: tuple[dict[str, Any], ...] = ()
    """Partial assignments of factor levels; runs matching any of them are not planned."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base": self.base.to_dict(),
            "factors": {k: list(v) for k, v in self.factors.items()},
            "seeds": list(self.seeds),
            "lr": {**asdict(self.lr), "grid": list(self.lr.grid)},
            "exclude": [dict(e) for e in self.exclude],
        }

    @property
    def study_id(self) -> str:
        """Content hash of the spec: a study's identity in the store."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _round(value: float) -> float:
    # Grid values become config values and run ids: round away float noise like 0.30000000000000004.
    return float(f"{value:.3g}")


def load_spec(path: str | Path) -> StudySpec:
    """Parse and validate a study TOML file; errors name the file and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise NormlabError(f"{path}: no such study file") from None
    except tomllib.TOMLDecodeError as error:
        raise NormlabError(f"{path}: invalid TOML: {error}") from None
    return spec_from_dict(data, source=str(path))


def spec_from_dict(data: dict[str, Any], source: str = "spec") -> StudySpec:
    """Build a :class:`StudySpec` from parsed TOML (sections: study, run, factors, lr, exclude)."""
    known_sections = {"study", "run", "factors", "lr", "exclude"}
    _reject_unknown(data, known_sections, source, "top level")
    study = dict(data.get("study", {}))
    _reject_unknown(study, {"name", "seeds"}, source, "[study]")
    run = dict(data.get("run", {}))
    run_fields = {f.name for f in fields(RunConfig)} - {"lr", "seed"}
    _reject_unknown(run, run_fields, source, "[run]")
    factors = dict(data.get("factors", {}))
    _reject_unknown(factors, set(FACTOR_KEYS), source, "[factors]")
    for key, levels in factors.items():
        if not isinstance(levels, list) or not levels:
            raise NormlabError(f"{source}: factors.{key} must be a non-empty list of levels")
        if len(set(map(repr, levels))) != len(levels):
            raise NormlabError(f"{source}: factors.{key} repeats a level: {levels}")
    lr_data = dict(data.get("lr", {}))
    _reject_unknown(lr_data, {f.name for f in fields(LrProtocol)}, source, "[lr]")
    if "grid" in lr_data:
        lr_data["grid"] = tuple(lr_data["grid"])
    seeds = study.get("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise NormlabError(f"{source}: study.seeds must be a non-empty list of integers")
    try:
        base = RunConfig(**run)
        lr = LrProtocol(**lr_data)
    except TypeError as error:
        raise NormlabError(f"{source}: {error}") from None
    exclude = tuple(dict(e) for e in data.get("exclude", []))
    spec = StudySpec(
        name=str(study.get("name", Path(source).stem)),
        base=base,
        factors={k: tuple(v) for k, v in factors.items()},
        seeds=tuple(seeds),
        lr=lr,
        exclude=exclude,
    )
    validate_spec(spec, source)
    return spec


def validate_spec(spec: StudySpec, source: str = "spec") -> None:
    """Check protocol values; run-level checks (norm names, batch sizes) happen in the plan."""
    lr = spec.lr
    if lr.mode not in LR_MODES:
        raise NormlabError(f"{source}: lr.mode={lr.mode!r}; valid: {', '.join(LR_MODES)}")
    if lr.grid_scaling not in SCALING_RULES or lr.rule not in ("linear", "sqrt"):
        raise NormlabError(f"{source}: lr.grid_scaling / lr.rule must be linear, sqrt (or none)")
    if lr.points < 1 or lr.spacing <= 1.0 and lr.points > 1:
        raise NormlabError(f"{source}: lr.points must be >= 1 and lr.spacing > 1")
    if min((*lr.grid, lr.center, lr.base_lr)) <= 0 or lr.base_batch_size < 1:
        raise NormlabError(f"{source}: learning rates and lr.base_batch_size must be positive")
    for entry in spec.exclude:
        _reject_unknown(entry, set(FACTOR_KEYS) | {"norm_options"}, source, "[[exclude]]")


def _reject_unknown(table: dict[str, Any], known: set[str], source: str, where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise NormlabError(
            f"{source}: unknown key {unknown[0]!r} in {where}; valid keys: {', '.join(sorted(known))}"
        )
