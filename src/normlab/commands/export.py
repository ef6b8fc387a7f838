"""``normlab export``: a study store as CSV or parquet tables."""

from __future__ import annotations

from pathlib import Path

import click

from normlab.study.export import FORMATS, export_store


@click.command()
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "--format",
    "format_",
    type=click.Choice(FORMATS),
    default="csv",
    show_default=True,
    help="csv (standard library) or parquet (needs pyarrow: pip install 'normlab[parquet]').",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="File for the runs table (default: DIR/runs.FORMAT); the per-epoch table goes beside "
    "it as NAME_epochs.FORMAT.",
)
def export(out_dir: str, format_: str, output: str | None) -> None:
    """Export DIR's store: one row per run (config columns, metrics) and one per run and epoch.

    Only reads the store: it works while a study runs in DIR (the runs finished so far).
    """
    for path, rows in export_store(Path(out_dir), format_, output):
        click.echo(f"wrote {path} ({rows} rows)")
