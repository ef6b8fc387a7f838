"""A study as a value: TOML -> validated frozen dataclasses, parsed once and passed down.

A study file has five sections; every key has a default, and every error names the file, the
line and the key (``study.toml:14: factors.batch_size[1]: expected an integer, got 'eight'``)::

    [study]
    name = "BN vs GN"            # shown in reports
    seeds = [0, 1, 2]            # or a count: seeds = 3 -> 0, 1, 2; seed s = same data order for all
    diagnostics = ["noise"]      # per-run diagnostics beyond gap + stability (always recorded):
                                 # "noise", "variance_shift"
    keep_weights = false         # true: each finished run's final state dict in OUT/weights/
    compare = "norm"             # the factor the question is about; its first level is the baseline

    [run]                        # fixed values of every run: any RunConfig field but lr and seed
    dataset = "digits"           # or shapes, or a path: CIFAR archive/folder, image folder, .npz
    dataset_options = {}         # e.g. { max_train_examples = 2000 }; { num_examples = 600 } ...
    # model = "resnet20"         # or "pkg.module:factory", "path/to/file.py:factory"
    # augment = true             # random crop + flip;  classes_per_batch = 2: correlated batches
    depth = 8
    widths = [16, 32, 64]
    epochs = 8                   # the budget: equal examples across batch sizes ...
    # steps = 500                # ... or equal optimizer steps (set one of the two)

    [run.norm_options.gn]        # fixed options of one norm: a table named after the norm
    groups = 4
    # ([run.norm_options] with eps = 1e-3 would set an option of every norm: each must take it)

    [factors]                    # the study is the cross product of these levels
    norm = ["bn", "gn", "none"]
    batch_size = [8, 32, 128]
    # also: weight_decay, norm_weight_decay, dropout, dropout_position, momentum (the SGD
    # momentum), bn_momentum (running-statistics momentum of every norm that keeps running
    # statistics), optimizer, init, schedule, depth, widths, epochs or steps, model, augment,
    # classes_per_batch, and sampler ("shuffle": a fresh permutation each epoch; "balanced":
    # class-balanced mini-batches)

    [factors.norm_options.bn]    # an option varied for one norm: BN's running-average momentum
    momentum = [0.1, 0.01]       # (PyTorch convention); the other norms' cells do not split on it
    # ([factors.norm_options] with eps = [1e-5, 1e-3] would vary an option of every norm)

    [lr]                         # the learning-rate protocol (see below)
    mode = "tuned"

    [[exclude]]                  # runs matching every key of one entry are not planned
    norm = "bn"
    batch_size = 128

**Norm options.** A norm option lives in ``norm_options`` under ``[run]`` (fixed) or
``[factors]`` (varied), either for every norm (a key) or for one norm (a table named after the
norm). An option set in two places for the same norm is an error. A varied option of one norm
becomes the factor ``norm_options.<norm>.<option>`` of that norm's cells only; an option of every
norm the factor ``norm_options.<option>``. ``[[exclude]]`` entries name factors the same way
(``norm_options.gn.groups = 1`` as a dotted key), and every value must be one of the factor's
levels.

**BN momentum.** ``bn_momentum`` (under ``[run]`` or ``[factors]``) sets the momentum of every
norm that updates running statistics (registry flag ``running_momentum``: bn, bn_keras, gbn, brn,
bgn, evonorm_b0); the others ignore it. As a factor it splits every norm's cells, so a norm
without running statistics trains an identical run for each level: exclude those cells, or vary
``[factors.norm_options.bn] momentum`` instead. Setting it and a norm's ``momentum`` option for
the same norm is an error.

**Diagnostics and weights.** Every run records ``gap`` (EMA vs PreciseBN vs batch-statistics
test accuracy, runs with BN layers) and ``stability`` (loss instability, gradient norms,
divergence, collapse); ``[study] diagnostics`` adds ``noise`` and ``variance_shift``
(:mod:`normlab.study.diagnose`). ``keep_weights = true`` saves each finished run's state dict as
``OUT/weights/<run_id>.pt`` (``torch.load(path, weights_only=True)``). Neither changes a run's or
the study's identity: adding them to a spec resumes the same study (runs already finished are
not diagnosed again).

**Learning-rate protocols** (``[lr]``; a key of another mode is an error):

- ``tuned`` (default): every cell (all factors except lr and seed) trains each lr of a log grid
  with every seed; the lr with the best mean validation accuracy is selected, its test accuracy
  reported. ``grid = [...]`` lists the values, else ``points`` values ``spacing``x apart around
  ``center``. Both move with batch size by ``grid_scaling`` (``sqrt``, ``linear`` or ``none``)
  from ``base_batch_size``. ``extend`` (default 2): while a cell's selected lr is at an edge of
  its grid, the runner adds the next value beyond it (same spacing), trains it with every seed
  and selects again, up to ``extend`` values per side; the report names cells that hit the limit.
- ``scaled``: ``lr = base_lr * (batch_size / base_batch_size) ** power`` (``rule``: linear 1,
  sqrt 0.5).
- ``fixed``: ``lr = base_lr`` everywhere.

Checks that need no data run when a spec is loaded (:func:`normlab.study.load.load_spec`:
types, unknown keys and names, value ranges, impossible combinations such as GroupNorm groups
that do not divide a width, or batch size 1 with a batch-statistics norm, see
:mod:`normlab.study.checks`); checks against the dataset (a batch larger than the training set)
run in :func:`normlab.study.plan.check_study`. This module holds the spec's plain data only: it
imports neither the parser nor the checks, which build and judge it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from normlab.train import RunConfig

from .locate import KeyPath, SpecOrigin
from .protocol import AdaptiveProtocol

RUN_FIELDS = {f.name for f in fields(RunConfig)}

FACTOR_KEYS = tuple(
    f.name
    for f in fields(RunConfig)
    if f.name
    not in (
        "lr",
        "seed",
        "dataset",
        "dataset_options",
        "norm_options",
        "data_fingerprint",
        "model_format",
        "model_fingerprint",
    )
)
"""Factors other than norm options: run-config fields (lr and seed are the protocol's and the
seeds'; one study has one dataset)."""

LR_MODES = ("tuned", "scaled", "fixed")
SCALING_RULES = {"linear": 1.0, "sqrt": 0.5, "none": 0.0}
MODE_KEYS = {
    "tuned": ("grid", "center", "points", "spacing", "grid_scaling", "base_batch_size", "extend"),
    "scaled": ("base_lr", "base_batch_size", "rule"),
    "fixed": ("base_lr",),
}
"""The ``[lr]`` keys each mode reads (besides ``mode``)."""


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
    """Batch size at which ``center`` / ``grid`` / ``base_lr`` apply."""
    rule: str = "linear"
    """scaled: ``linear`` or ``sqrt``."""
    extend: int = 2
    """tuned: grid points the protocol may add beyond each edge of a cell's grid (same spacing,
    trained and selected the same way) while the selected lr is at that edge; 0: never."""

    def to_dict(self) -> dict[str, Any]:
        values = {**asdict(self), "grid": list(self.grid)}
        if self.extend == LrProtocol.extend:
            # Specs written before the key existed keep their identity (study id, resume).
            del values["extend"]
        return values

    def step(self, grid: tuple[float, ...], upward: bool) -> float:
        """Ratio between neighbouring values at one edge of ``grid`` (``spacing`` for one value)."""
        if len(grid) < 2:
            return self.spacing
        return grid[-1] / grid[-2] if upward else grid[1] / grid[0]

    def learning_rates(self, batch_size: int) -> tuple[float, ...]:
        """The lr values a cell with ``batch_size`` trains (one unless tuned)."""
        ratio = batch_size / self.base_batch_size
        if self.mode == "fixed":
            return (self.base_lr,)
        if self.mode == "scaled":
            return (_round(self.base_lr * ratio ** SCALING_RULES[self.rule]),)
        scale = ratio ** SCALING_RULES[self.grid_scaling]
        if self.grid:
            values = [lr * scale for lr in self.grid]
        else:
            offsets = [i - (self.points - 1) / 2 for i in range(self.points)]
            values = [self.center * scale * self.spacing**o for o in offsets]
        return tuple(dict.fromkeys(_round(v) for v in values))  # rounding may merge neighbours


@dataclass(frozen=True)
class StudySpec:
    """A whole study: what to vary, what to hold fixed, how to pick learning rates."""

    name: str = "study"
    """Shown in reports."""
    base: RunConfig = field(default_factory=RunConfig)
    """Values of every run-config field a factor does not vary; ``base.norm_options`` holds the
    fixed options of every norm."""
    norm_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Norm name -> fixed options of that norm only (``[run.norm_options.<norm>]``)."""
    factors: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Factor name -> levels. Names are the keys under ``[factors]``, dotted for norm options
    (``norm_options.eps`` for every norm, ``norm_options.gn.groups`` for gn's cells only)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds; seed s gives every norm the same data order (paired design)."""
    lr: LrProtocol = field(default_factory=LrProtocol)
    """Learning-rate protocol."""
    exclude: tuple[dict[str, Any], ...] = ()
    """Partial assignments of factor levels (dotted factor names); matching cells are not planned."""
    diagnostics: tuple[str, ...] = field(default=(), compare=False)
    """Per-run diagnostics beyond the default ones (``noise``, ``variance_shift``); how runs are
    observed, not what they are: not part of the study's identity."""
    keep_weights: bool = field(default=False, compare=False)
    """Keep each finished run's final state dict in ``OUT/weights/<run_id>.pt``; not part of the
    study's identity."""
    compare: str = "norm"
    """The factor the study's question is about; its first level is the baseline of the tables,
    tests and verdict (``bn`` for ``norm``)."""
    adaptive: AdaptiveProtocol | None = None
    """``[study] protocol = "adaptive"``: tuning seeds select each cell's lr, evaluation seeds
    train in rounds until the comparisons resolve (:mod:`.protocol`); None: the fixed protocol
    (every lr with every seed of ``seeds``)."""
    origin: SpecOrigin = field(default_factory=SpecOrigin, compare=False, repr=False)
    """File and key lines the spec came from, for error messages; not part of its identity."""

    @property
    def protocol(self) -> str:
        """``fixed`` or ``adaptive``."""
        return "fixed" if self.adaptive is None else "adaptive"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base": self.base.to_dict(),
            "norm_options": {k: dict(v) for k, v in self.norm_options.items()},
            "factors": {k: list(v) for k, v in self.factors.items()},
            "seeds": list(self.seeds),
            "lr": self.lr.to_dict(),
            "exclude": [dict(e) for e in self.exclude],
            # The default is left out so that specs written before the key keep their study id.
            **({"compare": self.compare} if self.compare != "norm" else {}),
            # Fixed-protocol specs carry no "study" key: their ids stay what they were.
            **({"study": self.adaptive.to_dict()} if self.adaptive is not None else {}),
        }

    @property
    def baseline(self) -> Any:
        """First level of the compared factor (the base run's value when it is not varied)."""
        levels = self.factors.get(self.compare)
        return levels[0] if levels else getattr(self.base, self.compare, None)

    @property
    def study_id(self) -> str:
        """Content hash of the spec: a study's identity in the store. The adaptive protocol's
        budget is left out: the same study with a larger budget resumes and continues."""
        values = self.to_dict()
        if "study" in values:
            values["study"] = {k: v for k, v in values["study"].items() if k != "budget"}
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def norms(self) -> tuple[str, ...]:
        """The normalizations the study trains."""
        return tuple(self.factors.get("norm", (self.base.norm,)))

    def cells(self) -> list[dict[str, Any]]:
        """Every planned cell (factor name -> level), in a stable order, exclusions removed.

        A factor scoped to one norm (``norm_options.<norm>.<option>``) splits that norm's cells
        only; the cells of other norms do not carry it.
        """
        shared = [name for name in self.factors if norm_scope(name) is None]
        cells = []
        for levels in itertools.product(*(self.factors[name] for name in shared)):
            cell = dict(zip(shared, levels, strict=True))
            norm = cell.get("norm", self.base.norm)
            scoped = [name for name in self.factors if norm_scope(name) == norm]
            for scoped_levels in itertools.product(*(self.factors[name] for name in scoped)):
                full = {**cell, **dict(zip(scoped, scoped_levels, strict=True))}
                if not any(_matches(full, rule) for rule in self.exclude):
                    cells.append(full)
        return cells

    def cell_config(self, cell: dict[str, Any]) -> RunConfig:
        """The run config of ``cell`` (lr and seed still the base's)."""
        changes = {k: v for k, v in cell.items() if k in RUN_FIELDS}
        norm = changes.get("norm", self.base.norm)
        options = {**self.base.norm_options, **self.norm_options.get(norm, {})}
        for name, level in cell.items():
            if name.startswith("norm_options."):
                options[name.rsplit(".", 1)[1]] = level
        return self.base.replace(**changes, norm_options=options)

    def level_path(self, factor: str, level: Any) -> KeyPath:
        """Key path of one level of a factor (``("factors", "batch_size", 2)``)."""
        return ("factors", *factor.split("."), self.factors[factor].index(level))

    def value_path(self, cell: dict[str, Any], name: str) -> KeyPath:
        """Where the value of run-config field ``name`` in ``cell`` comes from."""
        return self.level_path(name, cell[name]) if name in cell else ("run", name)

    def option_path(self, cell: dict[str, Any], norm: str, option: str) -> KeyPath:
        """Where norm option ``option`` of ``norm`` in ``cell`` comes from."""
        for factor in (f"norm_options.{norm}.{option}", f"norm_options.{option}"):
            if factor in cell:
                return self.level_path(factor, cell[factor])
        if option in self.norm_options.get(norm, {}):
            return ("run", "norm_options", norm, option)
        return ("run", "norm_options", option)


def norm_scope(factor: str) -> str | None:
    """The norm a factor is scoped to (``norm_options.gn.groups`` -> ``gn``), else None."""
    parts = factor.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "norm_options" else None


def _matches(cell: dict[str, Any], rule: dict[str, Any]) -> bool:
    return all(name in cell and cell[name] == level for name, level in rule.items())


def _round(value: float) -> float:
    # Grid values become config values and run ids: round away float noise like 0.30000000000000004.
    return float(f"{value:.3g}")
