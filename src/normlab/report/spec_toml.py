"""A stored spec (``StudySpec.to_dict()``) written back as study TOML, for the reproduction
section: ``normlab study spec.toml`` plans the same study (same study id, same runs)."""

from __future__ import annotations

import json
from typing import Any

LR_KEYS = {
    "tuned": ("grid", "center", "points", "spacing", "grid_scaling", "base_batch_size", "extend"),
    "scaled": ("base_lr", "base_batch_size", "rule"),
    "fixed": ("base_lr",),
}
"""The ``[lr]`` keys each mode reads (``normlab.study.spec.MODE_KEYS``)."""
SET_BY_PROTOCOL = ("lr", "seed", "data_fingerprint", "model_format", "model_fingerprint")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if value is None:
        raise ValueError("TOML has no null")
    return repr(value)


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def spec_toml(spec: dict[str, Any]) -> str:
    """TOML text of ``spec``; run values that are None (the field's default) are left out."""
    factors = spec.get("factors", {})
    lines = ["[study]", f"name = {_value(spec['name'])}"]
    if spec.get("study", {}).get("protocol") != "adaptive":  # adaptive seeds come in rounds
        lines.append(f"seeds = {_value(spec['seeds'])}")
    if "compare" in spec:
        lines.append(f"compare = {_value(spec['compare'])}")
    # The protocol's keys (``protocol = "adaptive"``, ``tuning_seeds``, ``budget`` ...), stored
    # under "study" as [study] spells them; None is a default (no budget) and is left out.
    lines += [f"{k} = {_value(v)}" for k, v in spec.get("study", {}).items() if v is not None]
    lines += ["", "[run]"]
    for key, value in spec["base"].items():
        if key in SET_BY_PROTOCOL or key in factors or value is None:
            continue
        if key == "norm_options" and not value:
            continue
        lines.append(f"{key} = {_value(value)}")
    for norm, options in spec.get("norm_options", {}).items():
        lines += [
            "",
            f"[run.norm_options.{norm}]",
            *(f"{k} = {_value(v)}" for k, v in options.items()),
        ]
    if factors:
        lines += ["", "[factors]"]
        for name, levels in factors.items():
            lines.append(f"{name} = {_value(levels)}")  # dotted: nested tables
    lr = spec["lr"]
    lines += ["", "[lr]", f"mode = {_value(lr['mode'])}"]
    for key in LR_KEYS[lr["mode"]]:
        if key in lr and not (key == "grid" and not lr[key]):
            if key in ("center", "points", "spacing") and lr.get("grid"):
                continue
            lines.append(f"{key} = {_value(lr[key])}")
    for rule in spec.get("exclude", []):
        lines += ["", "[[exclude]]", *(f"{k} = {_value(v)}" for k, v in rule.items())]
    return "\n".join(lines) + "\n"
