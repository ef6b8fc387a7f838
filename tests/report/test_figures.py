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


NORMS = ("bn", "none", "ln", "gn")
SIZES = (2, 4, 8, 16, 32, 128)


def default_shaped_input(stability_record):
    """Report input shaped like the default study (4 norms x 6 batch sizes x 3 lrs x 2 seeds),
    with ``stability_record(record)`` as each run's stability diagnostic."""
    records = study_records(
        {(norm, size): 0.9 + 0.01 * i for i, norm in enumerate(NORMS) for size in SIZES}, seeds=2
    )
    for record in records:
        record["cell"] = dict(sorted(record["cell"].items()))  # as the store keeps it
    diagnostics = {r["run_id"]: {"stability": stability_record(r)} for r in records}
    return records, diagnostics


def instability_record(record):
    unstable = record["config"]["lr"] == 0.1 and record["config"]["norm"] == "none"
    return {
        "instability": 0.3 if unstable else 0.0,
        "excursion_steps": [],
        "max_rise": 1.0,
        "rise_threshold": 5.0,
    }


def test_no_figure_has_overlapping_tick_labels(monkeypatch):
    # Before: the stability figure labelled 24 bars "bn\nB=2" ... "gn\nB=128" in one row of a
    # 4.9-inch panel, and the labels ran into each other. Every figure of a default-shaped
    # study is checked on the renderer's own label boxes, after it is laid out for saving.
    from normlab.report.document import StudyInput, build_report
    from normlab.report.ticks import tick_label_overlaps

    rendered = []
    save = figures.png_bytes

    def checked(figure):
        png = save(figure)
        rendered.append(tick_label_overlaps(figure))
        return png

    monkeypatch.setattr(figures, "png_bytes", checked)
    records, diagnostics = default_shaped_input(instability_record)
    spec = {
        "name": "default-shaped",
        "compare": "norm",
        "factors": {"norm": list(NORMS), "batch_size": list(SIZES)},
        "base": {"dataset": "digits", "epochs": 6, "optimizer": "sgd"},
        "lr": {"mode": "tuned"},
        "seeds": [0, 1],
    }
    report = build_report(
        StudyInput("default-shaped", spec, records, _curves(records), diagnostics)
    )
    assert "stability" in [f.name for f in report.figures if f.png is not None]
    assert len(rendered) == sum(f.png is not None for f in report.figures)
    assert rendered and all(overlaps == [] for overlaps in rendered), rendered


def test_stability_figure_draws_the_instability():
    records, diagnostics = default_shaped_input(instability_record)
    figure = figures.stability(records, diagnostics, "norm")
    assert figure.png is not None and coloured_pixels(figure.png) > 500
    assert (
        "Loss instability: mean over runs" in figure.caption and "than 5 standard" in figure.caption
    )
    assert "older normlab" not in figure.caption


def test_stability_figure_of_an_old_store_says_it_lacks_the_instability(monkeypatch):
    # Stores written before the statistic hold {"spikes": n, "spike_steps": [...]}: readable,
    # not drawn (the count measured per-batch noise), and the caption says so in words.
    titles = []
    save = figures.png_bytes

    def keep_titles(figure):
        titles.extend(axes.get_title() for axes in figure.axes)
        return save(figure)

    monkeypatch.setattr(figures, "png_bytes", keep_titles)
    records, diagnostics = default_shaped_input(lambda r: {"spikes": 600, "spike_steps": [30]})
    figure = figures.stability(records, diagnostics, "norm")
    assert figure.png is not None and coloured_pixels(figure.png) > 500
    assert "not in this store" in figure.caption and "older normlab" in figure.caption
    assert titles == ["diverged", "collapsed"]


def test_stability_figure_says_which_runs_were_too_short_to_judge():
    def record(run):
        if run["config"]["batch_size"] == 128:  # a few steps: no two windows
            return {"instability": None, "excursion_steps": [], "max_rise": None}
        return instability_record(run)

    records, diagnostics = default_shaped_input(record)
    figure = figures.stability(records, diagnostics, "norm")
    too_short = sum(r["config"]["batch_size"] == 128 for r in records)
    assert f"{too_short} run(s) too short to judge" in figure.caption
