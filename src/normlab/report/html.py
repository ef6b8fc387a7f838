"""``report.html``: one self-contained file (figures as base64 PNG, CSS inline, no script, no
network), readable on a laptop screen and in print (``@media print``)."""

from __future__ import annotations

import base64
from html import escape

from .document import Report
from .markdown import reproduction
from .tables import Table

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b;
       max-width: 1100px; margin: 0 auto; padding: 1.5rem 2rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
.question { color: #555; font-style: italic; margin-top: 0; }
.verdict { background: #f3f6fb; border-left: 4px solid #2f6db5; padding: .8rem 1rem; }
.recommendation { font-weight: 600; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: 13px; }
th, td { border: 1px solid #ccd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef1f6; }
figure { margin: 1rem 0; break-inside: avoid; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
.missing { color: #8a6d3b; }
pre { background: #f7f7f7; padding: .6rem; overflow-x: auto; font-size: 12px; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  .verdict { border-left-color: #000; background: none; }
  figure img { max-width: 16cm; }
  h2 { break-after: avoid; }
  pre { white-space: pre-wrap; }
}
"""


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows
    )
    return f"<h3>{escape(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _code(text: str) -> str:
    return escape(text).replace("`", "")


def render_html(report: Report) -> str:
    """The report as one HTML page."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(report.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(report.title)}</h1>",
        f'<p class="question">{escape(report.question)}</p>',
        '<section class="verdict" id="verdict"><h2>Verdict</h2>',
        *(f"<p>{escape(sentence)}</p>" for sentence in report.verdict.sentences),
        f'<p class="recommendation">{escape(report.verdict.recommendation)}</p></section>',
        "<h2>Results</h2>",
        *(_table(table) for table in report.tables),
        "<ul>",
        *(f"<li>{_code(note)}</li>" for note in report.notes),
        "</ul><h2>Figures</h2>",
    ]
    for figure in report.figures:
        if figure.png is None:
            parts.append(
                f'<p class="missing"><b>{escape(figure.title)}</b>: left out, '
                f"{escape(figure.missing or '')}.</p>"
            )
            continue
        data = base64.b64encode(figure.png).decode("ascii")
        parts.append(
            f'<figure id="{figure.name}"><img alt="{escape(figure.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption><b>{escape(figure.title)}.</b> '
            f"{escape(figure.caption)}</figcaption></figure>"
        )
    parts += ["<h2>Protocol</h2><ul>", *(f"<li>{_code(p)}</li>" for p in report.protocol)]
    parts += ["</ul><h2>Runs</h2><ul>", *(f"<li>{_code(r)}</li>" for r in report.runs), "</ul>"]
    reproduce = reproduction(report)
    fence = reproduce.index("```toml")
    parts += ["<h2>Reproduce</h2><ul>"]
    parts += [f"<li>{_code(line[2:])}</li>" for line in reproduce[2:fence] if line.startswith("- ")]
    parts += [f"</ul><pre>{escape(report.reproduction.spec_text)}</pre>", "</body></html>"]
    return "\n".join(parts)
