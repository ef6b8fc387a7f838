"""Parsed TOML -> a validated :class:`~normlab.study.spec.StudySpec`, one check per key.

One pass over the sections: every value is type-checked against the dataclass field it fills
(``typing.get_type_hints`` of ``RunConfig`` and ``LrProtocol``, so a new run-config field is a
new valid key and factor at once), range-checked where it is written (:mod:`.checks`), and every
error names the file line and the key. Checks across sections (one budget, per-norm options of
studied norms, no option set twice) and over the planned cells (:func:`.checks.check_cells`)
follow. The format is documented in :mod:`normlab.study.spec`.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

from normlab.data import DATASETS
from normlab.data.files import looks_like_path
from normlab.errors import NormlabError
from normlab.train import RunConfig
from normlab.train.model_ref import absolute_ref

from .checks import check_cells, value_problem
from .diagnose import DIAGNOSTIC_KINDS
from .locate import KeyPath, SpecOrigin, dotted
from .parse_protocol import parse_protocol
from .protocol import ADAPTIVE_KEYS
from .spec import (
    FACTOR_KEYS,
    LR_MODES,
    MODE_KEYS,
    RUN_FIELDS,
    SCALING_RULES,
    LrProtocol,
    StudySpec,
    norm_scope,
)
from .toml_types import TypeMismatch, coerce_value, describe_type

SECTIONS = ("study", "run", "factors", "lr", "exclude")
OBSERVATION_KEYS = ("diagnostics", "keep_weights")
"""``[study]`` keys that say how runs are observed, not what they are (see ``spec.py``)."""
RUN_HINTS = typing.get_type_hints(RunConfig)
LR_HINTS = typing.get_type_hints(LrProtocol)
SET_ELSEWHERE = {
    "lr": "set by the [lr] protocol, not per run",
    "seed": "set by study.seeds, not per run",
    "dataset": "one study has one dataset: set it under [run]",
    "dataset_options": "one study has one dataset: set it under [run]",
    "data_fingerprint": "set by normlab from the content of the data files",
    "model_format": "set by normlab from what the model's factory returns",
    "model_fingerprint": "set by normlab from the content of the model's files",
}


def parse_spec(data: dict[str, Any], origin: SpecOrigin) -> StudySpec:
    """Validate parsed TOML ``data`` and build the spec; errors are located with ``origin``."""
    return _Parser(data, origin).spec()


class _Parser:
    """One pass over parsed TOML: every value is type- and range-checked where it is written."""

    def __init__(self, data: dict[str, Any], origin: SpecOrigin) -> None:
        self.data = data
        self.origin = origin

    def fail(self, path: KeyPath, message: str) -> NormlabError:
        return self.origin.error(path, message)

    def spec(self) -> StudySpec:
        self.known(self.data, SECTIONS, ())
        name, seeds, compare = self.study()
        adaptive = parse_protocol(self.table("study"), self.fail)
        if adaptive is not None:  # the seeds that train every lr of a cell's grid
            seeds = adaptive.tuning_seed_values()
            self.adaptive_lr()
        diagnostics, keep_weights = self.observation()
        base, norm_options = self.run()
        factors = self.factors()
        spec = StudySpec(
            name=name,
            base=base,
            norm_options=norm_options,
            factors=factors,
            seeds=seeds,
            lr=self.lr(),
            exclude=self.exclude(factors),
            diagnostics=diagnostics,
            keep_weights=keep_weights,
            compare=compare,
            adaptive=adaptive,
            origin=self.origin,
        )
        self.consistency(spec)
        check_cells(spec)
        return spec

    # -- sections ----------------------------------------------------------------------------
    def study(self) -> tuple[str, tuple[int, ...], str]:
        table = self.table("study")
        keys = ("name", "seeds", "compare", "protocol", *ADAPTIVE_KEYS, *OBSERVATION_KEYS)
        self.known(table, keys, ("study",))
        name = self.coerce(table.get("name", Path(self.origin.source).stem), str, ("study", "name"))
        compare = self.compare(table)
        seeds = table.get("seeds", [0, 1, 2])
        path: KeyPath = ("study", "seeds")
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            if seeds < 1:
                raise self.fail(path, f"a seed count must be >= 1, got {seeds}")
            return name, tuple(range(seeds)), compare
        if not isinstance(seeds, list) or not seeds:
            raise self.fail(
                path, f"expected a non-empty list of integers or a count, got {seeds!r}"
            )
        for index, seed in enumerate(seeds):
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise self.fail((*path, index), f"expected an integer >= 0, got {seed!r}")
            if seed in seeds[:index]:
                raise self.fail((*path, index), f"repeats the seed {seed}")
        return name, tuple(seeds), compare

    def adaptive_lr(self) -> None:
        """The adaptive protocol selects each cell's lr on tuning seeds: ``[lr] mode`` tuned."""
        mode = self.table("lr").get("mode", LrProtocol.mode)
        if mode != "tuned":
            raise self.fail(
                ("lr", "mode"),
                f'protocol = "adaptive" selects each cell\'s lr on tuning seeds: it needs mode '
                f'"tuned", got {mode!r}',
            )

    def compare(self, table: dict[str, Any]) -> str:
        """``[study] compare``: a factor of the study with two levels or more (norm by default)."""
        if "compare" not in table:
            return "norm"
        path: KeyPath = ("study", "compare")
        compare = self.coerce(table["compare"], str, path)
        factors = self.table("factors")
        levels = factors.get(compare)
        if compare.startswith("norm_options.") or not isinstance(levels, list):
            valid = ", ".join(k for k in factors if k != "norm_options") or "none"
            raise self.fail(path, f"{compare!r} is not a factor of this study (factors: {valid})")
        if len(levels) < 2:
            raise self.fail(path, f"factors.{compare} has one level: nothing to compare")
        return compare

    def observation(self) -> tuple[tuple[str, ...], bool]:
        """``[study] diagnostics`` (kinds beyond the default ones) and ``keep_weights``."""
        table = self.table("study")
        keep = self.coerce(table.get("keep_weights", False), bool, ("study", "keep_weights"))
        kinds = self.coerce(table.get("diagnostics", []), tuple[str, ...], ("study", "diagnostics"))
        for index, kind in enumerate(kinds):
            if kind not in DIAGNOSTIC_KINDS:
                raise self.fail(
                    ("study", "diagnostics", index),
                    f"unknown diagnostic {kind!r}; valid: {', '.join(DIAGNOSTIC_KINDS)}",
                )
        return tuple(dict.fromkeys(kinds)), keep

    def run(self) -> tuple[RunConfig, dict[str, dict[str, Any]]]:
        table = self.table("run")
        values: dict[str, Any] = {}
        per_norm: dict[str, dict[str, Any]] = {}
        for key, value in table.items():
            path: KeyPath = ("run", key)
            if key in ("lr", "seed"):
                raise self.fail(path, SET_ELSEWHERE[key])
            self.known({key: value}, sorted(RUN_FIELDS - {"lr", "seed"}), ("run",))
            if key in ("data_fingerprint", "model_format", "model_fingerprint"):
                raise self.fail(path, SET_ELSEWHERE[key])
            if key == "norm_options":
                values[key], per_norm = self.fixed_norm_options(value, path)
            elif key == "dataset":
                values[key] = self.field_value(key, self.data_path(value), path)
            elif key == "model" and isinstance(value, str):
                values[key] = self.field_value(key, absolute_ref(value, self.folder()), path)
            else:
                values[key] = self.field_value(key, value, path)
        return RunConfig(**values), per_norm

    def data_path(self, value: Any) -> Any:
        """A dataset path relative to the spec file's folder, made absolute (names stay)."""
        if not isinstance(value, str) or value in DATASETS or not looks_like_path(value):
            return value
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = self.folder() / path
        return str(path.resolve())

    def folder(self) -> Path:
        """What relative paths in the spec are relative to: its file's folder (else the current
        folder, for a spec built from a dict)."""
        source = Path(self.origin.source)
        return source.parent if source.is_file() else Path.cwd()

    def fixed_norm_options(
        self, table: Any, path: KeyPath
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        if not isinstance(table, dict):
            raise self.fail(path, f"expected a table of norm options, got {table!r}")
        shared, per_norm = {}, {}
        for key, value in table.items():
            if isinstance(value, dict):
                self.field_value("norm", key, (*path, key))
                per_norm[key] = dict(value)
            else:
                shared[key] = value
        return shared, per_norm

    def factors(self) -> dict[str, tuple[Any, ...]]:
        table = self.table("factors")
        run = self.data.get("run", {})
        factors: dict[str, tuple[Any, ...]] = {}
        for key, value in table.items():
            path: KeyPath = ("factors", key)
            if key in SET_ELSEWHERE:
                raise self.fail(path, SET_ELSEWHERE[key])
            self.known({key: value}, (*FACTOR_KEYS, "norm_options"), ("factors",))
            if key in run and key != "norm_options":  # options: checked per norm in consistency()
                raise self.fail(
                    ("run", key), f"is also a factor ({dotted(path)}); set it in one place"
                )
            if key != "norm_options":
                factors[key] = self.levels(key, value, path)
                continue
            if not isinstance(value, dict):
                raise self.fail(path, "expected a table: option = [levels], or a table per norm")
            for option, levels in value.items():
                if not isinstance(levels, dict):
                    factors[f"norm_options.{option}"] = self.levels(None, levels, (*path, option))
                    continue
                self.field_value("norm", option, (*path, option))
                for inner, inner_levels in levels.items():
                    factor = f"norm_options.{option}.{inner}"
                    factors[factor] = self.levels(None, inner_levels, (*path, option, inner))
        return factors

    def levels(self, name: str | None, value: Any, path: KeyPath) -> tuple[Any, ...]:
        """A factor's levels; ``name`` None for norm options (checked when the norm is built)."""
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"expected a non-empty list of levels, got {value!r}")
        levels: list[Any] = []
        for index, level in enumerate(value):
            if name is not None:
                if name == "model" and isinstance(level, str):
                    level = absolute_ref(level, self.folder())
                level = self.field_value(name, level, (*path, index))
            if level in levels:
                raise self.fail((*path, index), f"repeats the level {level!r}")
            levels.append(level)
        return tuple(levels)

    def lr(self) -> LrProtocol:
        table = self.table("lr")
        self.known(table, list(LR_HINTS), ("lr",))
        values = {
            key: self.coerce(value, LR_HINTS[key], ("lr", key)) for key, value in table.items()
        }
        mode = values.get("mode", LrProtocol.mode)
        if mode not in LR_MODES:
            raise self.fail(("lr", "mode"), f"{mode!r} is not one of: {', '.join(LR_MODES)}")
        for key in values:
            if key != "mode" and key not in MODE_KEYS[mode]:
                raise self.fail(
                    ("lr", key),
                    f"not read by mode {mode!r}, which reads: {', '.join(MODE_KEYS[mode])}",
                )
        for key in ("center", "points", "spacing"):
            if "grid" in values and key in values:
                raise self.fail(("lr", key), "unused when lr.grid lists the learning rates")
        for index, value in enumerate(values.get("grid", ())):
            if value <= 0 or value in values["grid"][:index]:
                raise self.fail(
                    ("lr", "grid", index), f"grid values must be positive and distinct, got {value}"
                )
        problems = {
            "grid": (lambda v: len(v) > 0, "must list at least one learning rate"),
            "center": (lambda v: v > 0, "must be > 0"),
            "base_lr": (lambda v: v > 0, "must be > 0"),
            "points": (lambda v: v >= 1, "must be >= 1"),
            "spacing": (lambda v: v > 1, "must be > 1 (the ratio between neighbouring values)"),
            "base_batch_size": (lambda v: v >= 1, "must be >= 1"),
            "extend": (lambda v: v >= 0, "must be >= 0 (grid points added beyond each edge)"),
            "grid_scaling": (
                lambda v: v in SCALING_RULES,
                f"must be one of: {', '.join(SCALING_RULES)}",
            ),
            "rule": (lambda v: v in ("linear", "sqrt"), "must be linear or sqrt"),
        }
        for key, (valid, text) in problems.items():
            if key in values and not valid(values[key]):
                raise self.fail(("lr", key), f"{text}, got {values[key]!r}")
        return LrProtocol(**values)

    def exclude(self, factors: dict[str, tuple[Any, ...]]) -> tuple[dict[str, Any], ...]:
        entries = self.data.get("exclude", [])
        if not isinstance(entries, list):
            raise self.fail(
                ("exclude",), "expected [[exclude]] tables, one per excluded combination"
            )
        rules = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not entry:
                raise self.fail(("exclude", index), "expected a non-empty table of factor levels")
            rule = {}
            for name, level in _flatten(entry).items():
                path = ("exclude", index, *name.split("."))
                if name not in factors:
                    valid = ", ".join(factors) or "none"
                    raise self.fail(path, f"not a factor of this study (factors: {valid})")
                if name in RUN_HINTS:
                    level = self.coerce(level, RUN_HINTS[name], path)
                if level not in factors[name]:
                    levels = ", ".join(map(repr, factors[name]))
                    raise self.fail(path, f"{level!r} is not a level of factors.{name} ({levels})")
                rule[name] = level
            rules.append(rule)
        return tuple(rules)

    def consistency(self, spec: StudySpec) -> None:
        """Checks across sections: one budget, per-norm options of studied norms, no option twice."""
        run = self.data.get("run", {})
        if ("epochs" in run or "epochs" in spec.factors) and (
            "steps" in run or "steps" in spec.factors
        ):
            where = ("run", "steps") if "steps" in run else ("factors", "steps")
            raise self.fail(where, "set one budget: epochs (equal examples) or steps (equal steps)")
        scopes = [("run", "norm_options", norm) for norm in spec.norm_options]
        scopes += [
            ("factors", "norm_options", norm_scope(f)) for f in spec.factors if norm_scope(f)
        ]
        for path in scopes:
            if path[-1] not in spec.norms:
                raise self.fail(
                    path, f"{path[-1]!r} is not a norm of this study ({', '.join(spec.norms)})"
                )
        for norm in spec.norms:
            sources = [("run", "norm_options", o) for o in spec.base.norm_options]
            sources += [("run", "norm_options", norm, o) for o in spec.norm_options.get(norm, {})]
            for factor in spec.factors:
                if factor.startswith("norm_options.") and norm_scope(factor) in (None, norm):
                    sources.append(("factors", *factor.split(".")))
            first: dict[str, KeyPath] = {}
            for path in sources:
                if path[-1] in first:
                    raise self.fail(
                        path,
                        f"option of {norm!r} also set at {dotted(first[path[-1]])}; set it once",
                    )
                first[path[-1]] = path
        if not spec.cells():
            raise self.fail(
                ("exclude",), "excludes every combination of factor levels: no run to train"
            )

    # -- helpers -----------------------------------------------------------------------------
    def table(self, section: str) -> dict[str, Any]:
        table = self.data.get(section, {})
        if not isinstance(table, dict):
            raise self.fail((section,), f"expected a table [{section}], got {table!r}")
        return table

    def known(self, table: dict[str, Any], valid: Any, path: KeyPath) -> None:
        for key in table:
            if key not in valid:
                what = "section" if not path else "key"
                close = difflib.get_close_matches(key, list(valid), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.fail((*path, key), f"unknown {what}; {hint}valid: {', '.join(valid)}")

    def coerce(self, value: Any, hint: Any, path: KeyPath) -> Any:
        try:
            return coerce_value(value, hint)
        except TypeMismatch:
            raise self.fail(path, f"expected {describe_type(hint)}, got {value!r}") from None

    def field_value(self, name: str, value: Any, path: KeyPath) -> Any:
        """``value`` of run-config field ``name``, type- and range-checked."""
        value = self.coerce(value, RUN_HINTS[name], path)
        problem = value_problem(name, value)
        if problem is not None:
            raise self.fail(path, problem)
        return value


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: ``{"norm_options": {"gn": {"groups": 1}}}`` ->
    ``{"norm_options.gn.groups": 1}``."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
