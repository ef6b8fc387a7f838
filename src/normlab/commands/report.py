"""``normlab report DIR [--open] [--readme]``: regenerate the reports of DIR's studies from its
store (also called by ``run`` and ``study`` when they finish)."""

from __future__ import annotations

import shlex
import webbrowser
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from normlab.errors import NormlabError
from normlab.report.document import Report, StudyInput
from normlab.report.spec_toml import spec_toml
from normlab.report.write import readme_block, slug, write_index, write_report
from normlab.study import STORE_NAME, open_store


def _versions() -> dict[str, str]:
    found = {}
    for package in ("normlab", "torch", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def load_studies(out_dir: Path) -> list[StudyInput]:
    """Every study of ``out_dir``'s store as report input, oldest first."""
    path = out_dir / STORE_NAME
    if not path.exists():
        raise NormlabError(f"{path}: no normlab store here (run a study with --out {out_dir})")
    studies = []
    with open_store(path, create=False) as store:
        ids = store.study_ids()
        for study_id in ids:
            spec = store.study_spec(study_id)
            records = store.records(study_id)
            folder = out_dir if len(ids) == 1 else out_dir / slug(spec["name"])
            studies.append(
                StudyInput(
                    name=spec["name"],
                    spec=spec,
                    records=records,
                    curves={r["run_id"]: store.curves(r["run_id"]) for r in records},
                    diagnostics=store.diagnostics(study_id),
                    legs=store.legs(study_id),
                    estimate=store.estimate(study_id),
                    versions=_versions(),
                    # Quoted: the report's command runs as printed, whatever the path.
                    command=shlex.join(
                        ["normlab", "study", str(folder / "spec.toml"), "--out", str(out_dir)]
                    ),
                    spec_text=spec_toml(spec),
                )
            )
    return studies


def write_reports(out_dir: Path) -> list[Report]:
    """Write the report of every study in ``out_dir`` (one in DIR itself, several in one folder
    each named by a slug of the study's name, with an index); return them, oldest first."""
    studies = load_studies(out_dir)
    if len(studies) == 1:
        return [write_report(studies[0], out_dir)]
    reports, entries, used = [], [], set()
    for study in studies:
        name = slug(study.name)
        while name in used:  # two studies of one name: keep both reports
            name += "-2"
        used.add(name)
        report = write_report(study, out_dir / name)
        reports.append(report)
        entries.append((report, name))
    write_index(out_dir, entries)
    return reports


@click.command(name="report")
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--open", "open_", is_flag=True, help="Open report.html in the web browser.")
@click.option(
    "--readme",
    is_flag=True,
    help="Print the README's results block (verdict and table of the folder's last study).",
)
def report(out_dir: str, open_: bool, readme: bool) -> None:
    """Regenerate DIR's report.html and report.md (with figures) from its store.

    Only reads the store: it works while a study runs in DIR (the runs finished so far).
    """
    folder = Path(out_dir)
    reports = write_reports(folder)
    if readme:
        command = shlex.join(["normlab", "report", str(out_dir), "--readme"])
        click.echo(readme_block(reports[-1], command))
        return
    for written in reports:
        click.echo(written.verdict.paragraph)
    entry = folder / ("report.html" if len(reports) == 1 else "index.html")
    click.echo(f"Report: {entry}")
    if open_:
        webbrowser.open(entry.resolve().as_uri())
