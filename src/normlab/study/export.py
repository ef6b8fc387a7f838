"""Export a store as two flat tables, CSV (stdlib ``csv``) or Parquet (``pyarrow``, optional).

- ``runs``: one row per run of each study (a run shared by two studies appears once per study):
  the store's run columns (``study_id``, ``run_id``, ``status``, metrics, ``error`` ...), the
  run's ``cell`` as JSON text, and every config field as a ``config.<field>`` column, nested
  options dotted (``config.norm_options.groups``). The prefix keeps config fields apart from
  metrics of the same name (``config.steps`` is the budget, ``steps`` the steps trained).
- ``epochs``: one row per run and epoch, the store's per-epoch curves (join on ``run_id``).

Columns are the union over rows; a value a run lacks is empty (CSV) or null (Parquet). Lists
(``config.widths``) are JSON text in CSV and lists in Parquet. CSV floats are written with
``repr`` and read back exactly.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from normlab.errors import NormlabError
from normlab.train import RunConfig

from .runner import STORE_NAME
from .store import open_store

FORMATS = ("csv", "parquet")
PARQUET_HINT = "parquet export needs pyarrow: pip install 'normlab[parquet]'"


@dataclass(frozen=True)
class ExportTable:
    """A flat table: column names (union over rows, first-seen order) and rows as dicts."""

    name: str
    columns: list[str]
    rows: list[dict[str, Any]]


def run_table(records: list[dict[str, Any]]) -> ExportTable:
    """The ``runs`` table from :meth:`Store.records` dicts."""
    rows = []
    for record in records:
        # Diagnostics are nested records (per-layer lists): they stay in the store.
        row = {k: v for k, v in record.items() if k not in ("config", "cell", "diagnostics")}
        row["cell"] = json.dumps(record["cell"], sort_keys=True)
        for name, value in record["config"].items():
            row.update(_flatten(f"config.{name}", value))
        rows.append(row)
    columns = _columns(rows)
    stored = [c for c in columns if not c.startswith("config.")]
    config = sorted((c for c in columns if c.startswith("config.")), key=_config_column_order)
    return ExportTable("runs", stored + config, rows)


def _config_column_order(column: str) -> tuple[int, str]:
    # RunConfig's field order (dataset, model, norm, optimizer, budget, seed); nested keys by name.
    order = [f.name for f in fields(RunConfig)]
    field_name = column.split(".")[1]
    return (order.index(field_name) if field_name in order else len(order), column)


def epoch_table(curves: list[dict[str, Any]]) -> ExportTable:
    """The ``epochs`` table from :meth:`Store.curves` dicts."""
    return ExportTable("epochs", _columns(curves), list(curves))


def export_store(
    out_dir: str | Path, format: str = "csv", output: str | Path | None = None
) -> list[tuple[Path, int]]:
    """Write the runs and epochs tables of ``out_dir/normlab.db``; return (path, rows) of each.

    The runs table goes to ``output`` (default ``out_dir/runs.<format>``), the epochs table
    beside it as ``<name>_epochs.<format>``.
    """
    if format not in FORMATS:
        raise NormlabError(f"export format {format!r}; valid: {', '.join(FORMATS)}")
    writer = write_csv if format == "csv" else write_parquet
    if format == "parquet":
        _pyarrow()  # fail before reading anything
    with open_store(Path(out_dir) / STORE_NAME, create=False) as store:
        records = store.records()
        run_ids = list(dict.fromkeys(record["run_id"] for record in records))
        curves = [row for run_id in run_ids for row in store.curves(run_id)]
    if not records:
        raise NormlabError(f"{Path(out_dir) / STORE_NAME}: no runs to export")
    runs_path = Path(output) if output is not None else Path(out_dir) / f"runs.{format}"
    epochs_path = runs_path.with_name(f"{runs_path.stem}_epochs{runs_path.suffix or '.' + format}")
    runs_path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for table, path in ((run_table(records), runs_path), (epoch_table(curves), epochs_path)):
        writer(table, path)
        written.append((path, len(table.rows)))
    return written


def write_csv(table: ExportTable, path: Path) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=table.columns, restval="")
        writer.writeheader()
        for row in table.rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})


def write_parquet(table: ExportTable, path: Path) -> None:
    pyarrow = _pyarrow()
    import pyarrow.parquet as parquet

    columns = {
        name: _arrow_column(pyarrow, [row.get(name) for row in table.rows])
        for name in table.columns
    }
    parquet.write_table(pyarrow.table(columns), path)


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise NormlabError(PARQUET_HINT) from None
    return pyarrow


def _arrow_column(pyarrow: Any, values: list[Any]) -> Any:
    try:
        return pyarrow.array(values)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError):
        # Mixed types in one column (e.g. a norm option that is a number for one run and a
        # string for another): keep every value, as JSON text.
        return pyarrow.array([None if v is None else json.dumps(v) for v in values])


def _flatten(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key in sorted(value):
            flat.update(_flatten(f"{name}.{key}", value[key]))
        return flat
    return {name: value}


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(name for row in rows for name in row))


def _csv_value(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value
