"""Reports: result tables and the Markdown summary, built from plain records."""

from .markdown import render_markdown
from .tables import Table, markdown_table, result_tables, statistics_gap_table

__all__ = ["Table", "markdown_table", "render_markdown", "result_tables", "statistics_gap_table"]
