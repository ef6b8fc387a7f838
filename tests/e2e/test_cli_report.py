"""A tiny study end to end writes report.html and report.md with figures; ``normlab report DIR``
regenerates them; a folder of several studies gets one report each and an index; report.html
renders in headless Chromium with every figure loaded and no console error."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from normlab.cli import main
from normlab.commands.report import load_studies
from normlab.report.document import build_report

SPEC = """
[study]
name = "tiny report study"
seeds = 3

[run]
dataset = "synthetic"
dataset_options = { num_examples = 160, num_classes = 4, size = 8 }
depth = 8
widths = [4, 4, 4]
epochs = 1

[factors]
norm = ["bn", "gn"]
batch_size = [8, 32]

[run.norm_options.gn]
groups = 2

[lr]
mode = "fixed"
base_lr = 0.05
"""


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    spec = folder / "tiny.toml"
    spec.write_text(SPEC)
    out = folder / "out"
    code = main(
        ["study", str(spec), "--out", str(out), "--workers", "1", "--threads", "1", "--quiet"]
    )
    assert code == 0
    return out


def test_a_study_writes_its_report_with_figures(study_dir):
    html = (study_dir / "report.html").read_text()
    markdown = (study_dir / "report.md").read_text()
    assert "Recommendation:" in html and "## Verdict" in markdown
    assert (study_dir / "figures" / "accuracy_vs_batch.png").stat().st_size > 0
    assert "figures/accuracy_vs_batch.png" in markdown
    assert (study_dir / "spec.toml").read_text().startswith("[study]")


def test_normlab_report_regenerates_the_report(study_dir, capsys):
    (study_dir / "report.html").unlink()
    shutil.rmtree(study_dir / "figures")
    assert main(["report", str(study_dir)]) == 0
    assert "Recommendation:" in capsys.readouterr().out
    assert (study_dir / "report.html").exists() and (study_dir / "figures").is_dir()
    assert main(["report", str(study_dir), "--readme"]) == 0
    assert "normlab report --readme: begin" in capsys.readouterr().out


def test_several_studies_get_one_report_each_and_an_index(study_dir, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(study_dir, out)
    second = tmp_path / "second.toml"
    second.write_text(
        SPEC.replace("tiny report study", "second study").replace("seeds = 3", "seeds = 2")
    )
    code = main(
        ["study", str(second), "--out", str(out), "--force-new", "--workers", "1", "--quiet"]
    )
    assert code == 0
    index = (out / "index.html").read_text()
    assert "tiny-report-study/report.html" in index and "second-study/report.html" in index
    assert (out / "second-study" / "report.md").exists()
    assert "no confidence intervals" in (out / "second-study" / "report.md").read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = """<script>
window.addEventListener("load", () => {
  // Per image: its size and how many of its pixels are coloured (max - min channel > 60).
  // Axes, ticks, text and grid lines are black, grey or white; data is drawn in the tab10 and
  // viridis colours, so an image without coloured pixels is a figure without data.
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d");
  const sizes = [...document.images].map(image => {
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    context.drawImage(image, 0, 0);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let coloured = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      const r = pixels[i], g = pixels[i + 1], b = pixels[i + 2];
      if (Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;
    }
    return image.closest("figure").id + ":" + image.naturalWidth + "x" + image.naturalHeight +
      ":" + coloured;
  });
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = "IMAGES " + sizes.join(" ") + " END";
  document.body.appendChild(out);
});
</script></body>"""
MIN_DATA_PIXELS = 200
"""Coloured pixels that make a figure "show data": one plotted line of a 700-pixel-wide panel
has several hundred, a legend's swatches alone about a hundred (two entries of 20 x 3 px)."""


def _parsed(images: list[list[str]]) -> list[tuple[str, tuple[str, str], int]]:
    return [(name, tuple(size.split("x")), int(coloured)) for name, size, coloured in images]


def laid_out_figures(study_dir) -> int:
    """How many figures the report lays out (each drawn, or left out with its reason)."""
    return len(build_report(load_studies(study_dir)[0]).figures)


def chromium(*args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (CI installs Debian's chromium)")
def test_report_renders_in_headless_chromium(study_dir, tmp_path):
    page = tmp_path / "probe.html"
    page.write_text((study_dir / "report.html").read_text().replace("</body>", PROBE))
    dumped = chromium(
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    )
    sizes = re.search(r"<pre id=\"probe\">IMAGES (.*?) END", dumped.stdout)
    assert sizes is not None, dumped.stderr[-2000:]
    images = [entry.split(":") for entry in sizes.group(1).split()]
    html = (study_dir / "report.html").read_text()
    assert len(images) == html.count("<img ") >= 3
    assert all(int(w) > 0 and int(h) > 0 for _, (w, h), _ in _parsed(images))
    # Every figure shows data, or says in words why it has none.
    empty = [name for name, _, coloured in _parsed(images) if coloured < MIN_DATA_PIXELS]
    assert not empty, f"figures without data: {empty} ({sizes.group(1)})"
    reasons = re.findall(r'<p class="missing"><b>[^<]*</b>: left out, ([^<]*)\.</p>', html)
    assert all(reason.strip() for reason in reasons)
    assert len(images) + len(reasons) == laid_out_figures(study_dir), (images, reasons)
    assert "learning_curves" in [name for name, _, _ in _parsed(images)]  # the study has curves
    assert "Recommendation:" in dumped.stdout
    console = [
        line for line in dumped.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line
    ]
    assert not [line for line in console if "Uncaught" in line or ":ERROR:CONSOLE" in line]
    screenshot = tmp_path / "first-screen.png"
    shot = chromium(
        f"--screenshot={screenshot}", "--window-size=1280,900", (study_dir / "report.html").as_uri()
    )
    assert screenshot.exists() and screenshot.stat().st_size > 0, shot.stderr[-2000:]
