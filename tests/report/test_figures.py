"""Figures drawn from synthetic records: every drawn figure shows data (coloured pixels: axes,
ticks and text are grey scale, data is drawn in colour), a figure without data says why."""

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

from synthetic_records import BN_WORSE_SMALL, study_records  # noqa: E402

from normlab.analysis.compare import cell_statistics  # noqa: E402
from normlab.report import figures  # noqa: E402


def coloured_pixels(png: bytes) -> int:
    """Pixels whose channels differ by more than 60: drawn data, not black / grey / white."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())


def _curves(records):
    return {
        r["run_id"]: [{"epoch": e, "val_acc": r["val_acc"] - 0.1 / e} for e in (1, 2, 3)]
        for r in records
    }


def test_learning_curves_match_cells_whatever_the_key_order():
    # The store keeps a cell as sorted JSON ({"batch_size": 2, "norm": "bn"}) while summaries
    # put the reported axes first ({"norm": "bn", "batch_size": 2}): matched by str(dict), no
    # run was ever found and the figure came out as empty axes.
    records = study_records(BN_WORSE_SMALL, seeds=2)
    for record in records:
        record["cell"] = dict(sorted(record["cell"].items()))
    cells = cell_statistics(records, "norm")
    figure = figures.learning_curves(cells, records, _curves(records))
    assert figure.png is not None and figure.missing is None
    # Three norms x two panels of three-point lines with markers: thousands of coloured pixels;
    # empty axes have none.
    assert coloured_pixels(figure.png) > 500


def test_learning_curves_without_curves_at_the_selected_lr_say_why():
    records = study_records(BN_WORSE_SMALL, seeds=2)
    cells = cell_statistics(records, "norm")
    selected = {c.summary.selected_lr for c in cells}
    curves = {
        run_id: curve
        for run_id, curve in _curves(records).items()
        if float(run_id.split("-")[2]) not in selected
    }
    figure = figures.learning_curves(cells, records, curves)
    assert figure.png is None and "selected lr" in figure.missing
