"""``report.md``: the report as Markdown, figures as PNG files beside it (``figures/*.png``)."""

from __future__ import annotations

from .document import Report
from .tables import markdown_table


def render_markdown(report: Report, figure_folder: str = "figures") -> str:
    """The whole report; figure ``f`` is linked as ``{figure_folder}/{f.name}.png``."""
    lines = [f"# {report.title}", "", f"> {report.question}", "", "## Verdict", ""]
    lines += [report.verdict.paragraph, "", "## Results", ""]
    for table in report.tables:
        lines += [f"### {table.title}", "", markdown_table(table), ""]
    lines += [*(f"- {note}" for note in report.notes), "", "## Figures", ""]
    for figure in report.figures:
        if figure.png is None:
            lines += [f"- *{figure.title}*: left out, {figure.missing}.", ""]
        else:
            lines += [
                f"### {figure.title}",
                "",
                f"![{figure.title}]({figure_folder}/{figure.name}.png)",
                "",
            ]
            lines += [figure.caption, ""] if figure.caption else []
    lines += ["## Protocol", "", *(f"- {line}" for line in report.protocol), ""]
    lines += ["## Runs", "", *(f"- {line}" for line in report.runs), ""]
    lines += reproduction(report)
    return "\n".join(lines)


def reproduction(report: Report) -> list[str]:
    study = report.reproduction
    versions = ", ".join(f"{name} {version}" for name, version in study.versions.items())
    return [
        "## Reproduce",
        "",
        f"- Versions: {versions}." if versions else "- Versions: not recorded.",
        f"- Command: `{study.command}`",
        "- Spec (`spec.toml` beside this report):",
        "",
        "```toml",
        study.spec_text.rstrip(),
        "```",
        "",
    ]
