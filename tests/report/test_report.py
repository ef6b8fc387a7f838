"""The report from synthetic records: verdict on top, tables, figures or the key that records
them, a reproduction spec that plans the same study, the README block."""

import sys
from pathlib import Path

import pytest
import tomllib

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

from synthetic_records import BN_WORSE_SMALL, study_records  # noqa: E402

from normlab.report.document import StudyInput, build_report  # noqa: E402
from normlab.report.html import render_html  # noqa: E402
from normlab.report.markdown import render_markdown  # noqa: E402
from normlab.report.spec_toml import spec_toml  # noqa: E402
from normlab.report.write import (  # noqa: E402
    README_BEGIN,
    README_END,
    readme_block,
    replace_readme_block,
    slug,
    write_report,
)
from normlab.study import load_spec, spec_from_dict  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def study_input(**changes):
    spec = load_spec(EXAMPLES / "default.toml").to_dict()
    records = study_records(BN_WORSE_SMALL)
    curves = {
        r["run_id"]: [{"epoch": e, "val_acc": r["val_acc"] - 0.1 / e} for e in (1, 2, 3)]
        for r in records
    }
    gap = {"running_acc": 0.85, "precise_acc": 0.88, "batch_acc": 0.9}
    noise = {"batch_sizes": [2, 8, 32], "layers": [{"mean_error": [0.5, 0.25, 0.125]}]}
    diagnostics = {
        r["run_id"]: {
            "gap": gap,
            "noise": noise,
            "stability": {"instability": 0.1, "rise_threshold": 5.0},
        }
        for r in records
        if r["config"]["norm"] == "bn"
    }
    values = dict(
        name=spec["name"],
        spec=spec,
        records=records,
        curves=curves,
        diagnostics=diagnostics,
        legs=[2545.0, 1.0],
        versions={"normlab": "0.1.0", "torch": "2.13.0"},
        command="normlab study out/spec.toml --out out",
        spec_text=spec_toml(spec),
    )
    return StudyInput(**{**values, **changes})


@pytest.fixture(scope="module")
def plain_report():
    """The report of the unchanged :func:`study_input`, built once (its six figures take
    seconds) for the tests that only read it."""
    return build_report(study_input())


def test_report_has_verdict_first_and_every_figure(plain_report):
    report = plain_report
    assert "below gn" in report.verdict.paragraph and "PreciseBN" in report.verdict.paragraph
    assert [f.name for f in report.figures if f.png] == [
        "accuracy_vs_batch",
        "learning_curves",
        "statistics_gap",
        "batch_noise",
        "lr_sensitivity",
        "stability",
    ]
    assert all(f.png.startswith(b"\x89PNG") for f in report.figures)
    markdown = render_markdown(report)
    assert (
        markdown.index("## Verdict") < markdown.index("## Results") < markdown.index("## Figures")
    )
    assert "2546 s over 2 invocation(s)" in markdown  # legs add up: a resume is not the study
    assert "torch 2.13.0" in markdown and "normlab study out/spec.toml" in markdown


def test_the_estimate_stands_beside_the_measured_wall_time(plain_report):
    records = study_records(BN_WORSE_SMALL)
    estimate = {"wall_seconds": 360.0, "runs": len(records) - 6, "planned": len(records) - 6}
    estimate |= {"workers": 2, "legs_before": 0}
    markdown = render_markdown(build_report(study_input(legs=[600.0, 60.0], estimate=estimate)))
    (line,) = [line for line in markdown.splitlines() if "estimated" in line]
    assert "Time: estimated 6.0 min, took 11.0 min (1.8x)" in line
    assert f"before training {len(records) - 6} run(s) on 2 worker(s)" in line
    assert "the 6 run(s) the lr grid extension added later are not in it" in line
    # Made when a resume first calibrated: only the legs from then on count.
    resumed = {**estimate, "legs_before": 1}
    markdown = render_markdown(build_report(study_input(legs=[600.0, 60.0], estimate=resumed)))
    assert "took 60 s (0.2x)" in markdown
    assert "estimated" not in render_markdown(plain_report)  # none recorded


def test_missing_figures_name_what_records_them():
    report = build_report(study_input(diagnostics={}, curves={}))
    missing = {f.name: f.missing for f in report.figures if f.png is None}
    assert set(missing) == {"learning_curves", "statistics_gap", "batch_noise"}
    assert "diagnostics 'gap'" in missing["statistics_gap"]
    assert "left out, recorded by the noise diagnostic" in render_markdown(report)


def test_html_is_self_contained(tmp_path):
    report = write_report(study_input(), tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "@media print" in html and report.verdict.recommendation in render_html(report)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir())[0] == "accuracy_vs_batch.png"


def test_reproduction_spec_plans_the_same_study():
    for path in sorted(EXAMPLES.glob("*.toml")):
        spec = load_spec(path)
        text = spec_toml(spec.to_dict())
        assert spec_from_dict(tomllib.loads(text), text=text).study_id == spec.study_id, path


def test_readme_block_is_generated_between_markers(plain_report):
    report = plain_report
    block = readme_block(report, "normlab report out --readme")
    assert block.startswith(README_BEGIN) and block.endswith(README_END)
    assert "differ across machines" in block and report.verdict.paragraph in block
    readme = f"intro\n{README_BEGIN}\nold\n{README_END}\nend\n"
    assert replace_readme_block(readme, block) == f"intro\n{block}\nend\n"


def test_slug_names_folders_after_the_study():
    assert slug("default: BN vs none vs LN") == "default-bn-vs-none-vs-ln"


def test_the_comparison_table_shows_both_intervals_and_they_agree_with_their_tests(plain_report):
    report = plain_report
    table = next(t for t in report.tables if t.title.startswith("Paired comparisons"))
    assert table.header[3:7] == [
        "95% CI (unadjusted)",
        "Holm-adjusted CI",
        "p (unadjusted)",
        "Holm p",
    ]
    for row in table.rows:
        for column, p_text in ((3, row[5]), (4, row[6])):
            low, high = (float(x) for x in row[column].split(" to "))
            p = float(p_text.removesuffix(" *"))
            # An interval excludes 0 exactly when its test rejects at 0.05.
            assert (low > 0 or high < 0) == (p < 0.05)


def test_a_keras_model_gets_the_keras_layer_beside_the_recommendation(plain_report):
    plain = plain_report
    records = study_records(BN_WORSE_SMALL)
    for record in records:
        record["config"]["model_format"] = "keras"
    report = build_report(study_input(records=records))
    assert plain.verdict.switch_to == report.verdict.switch_to == ("gn",)
    assert "In Keras" not in plain.verdict.recommendation
    assert report.verdict.recommendation == (
        f"{plain.verdict.recommendation} In Keras: gn: "
        "`keras.layers.GroupNormalization(groups=8, epsilon=1e-05)` in place of each "
        "`BatchNormalization()`."
    )
    assert "keras.layers.GroupNormalization(groups=8" in render_markdown(report)
