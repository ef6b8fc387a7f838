"""What the doctor reports: a :class:`Finding` per problem, with the measurement behind it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SEVERITIES = ("error", "warning", "info")
"""error: training or inference breaks or is silently wrong; warning: accuracy is measurably
lost; info: a setting that usually costs accuracy, with no measurement of the loss here."""


@dataclass(frozen=True)
class Finding:
    """One problem found in a model, with the numbers that show it and a concrete fix."""

    code: str
    """Stable identifier, e.g. ``bn-batch-noise``."""
    title: str
    """One line with the key numbers."""
    evidence: dict[str, Any]
    """The measurements (plain JSON values)."""
    fix: str
    severity: str
    """One of :data:`SEVERITIES`."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def top_values(values: dict[str, float], count: int = 3) -> dict[str, float]:
    """The ``count`` largest entries, largest first (evidence stays short)."""
    return dict(sorted(values.items(), key=lambda item: -item[1])[:count])


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def format_findings(findings: list[Finding]) -> str:
    """Readable text: one block per finding (severity, code, title, evidence, fix), errors
    first; ``no findings`` when the list is empty."""
    if not findings:
        return "no findings"
    order = {severity: index for index, severity in enumerate(SEVERITIES)}
    blocks = []
    for finding in sorted(findings, key=lambda f: order.get(f.severity, len(order))):
        lines = [f"[{finding.severity}] {finding.code}: {finding.title}"]
        lines += [f"    {key}: {_format_value(value)}" for key, value in finding.evidence.items()]
        lines.append(f"  fix: {finding.fix}")
        blocks.append("\n".join(lines))
    count = len(findings)
    return "\n\n".join(blocks) + f"\n\n{count} finding{'s' if count != 1 else ''}"
