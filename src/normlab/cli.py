"""``normlab`` command line: parse, call the layers below, print.

Errors in the user's input are one line on stderr and exit code 2; Ctrl-C keeps finished runs
(exit 130) and the same command resumes.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress, ProgressColumn, Task, TextColumn
from rich.progress_bar import ProgressBar
from rich.table import Table as RichTable
from rich.text import Text

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass

from normlab.commands.bench import bench
from normlab.commands.diagnose import diagnose
from normlab.commands.doctor import doctor
from normlab.commands.export import export
from normlab.commands.listing import list_
from normlab.commands.report import report as report_command
from normlab.commands.report import write_reports
from normlab.commands.run_options import QUESTION_OPTIONS, question_from, question_options
from normlab.errors import NormlabError
from normlab.report import Table
from normlab.report.write import terminal_summary
from normlab.study import (
    STORE_NAME,
    PlannedRun,
    StudyProgress,
    StudySpec,
    default_spec,
    load_spec,
    open_store,
    run_study,
)
from normlab.study.adaptive_plan import dry_run_lines
from normlab.study.dryrun import estimate_time
from normlab.study.executors import check_execution
from normlab.study.lock import hold_folder, refuse_if_held
from normlab.study.packrule import load_choices
from normlab.study.plan import check_study
from normlab.study.progress import ProgressTracker, status_text
from normlab.study.ray_executor import check_ray_reachable
from normlab.study.rounds import outcome_text
from normlab.study.work import PACK_MODES, Execution
from normlab.train import RunResult
from normlab.train.device import DEVICES

DEFAULT_OUT = "normlab-out"

# Piped output (CI logs, files) is not wrapped at 80 columns: result tables are wide.
stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="normlab")
def cli() -> None:
    """normlab: does batch normalization hinder training for my model, data and batch size?

    Trains ResNets built from the write-up's blocks (the write-up: a question with three Keras
    residual blocks, BN / none / LayerNorm; docs/WRITEUP.md in the repository), or your own
    model on your own data, with each normalization under a fair
    protocol and reports which normalization wins at each batch size.
    """


def execution_options(command):
    """Flags shared by ``run`` and ``study``."""
    command = click.option(
        "--out",
        "out_dir",
        default=DEFAULT_OUT,
        show_default=True,
        type=click.Path(file_okay=False),
        help="Output folder: normlab.db (SQLite) and report.md. One driver at a time: a second "
        "run or study on a folder in use is refused, naming the holder (normlab report and "
        "export work meanwhile).",
    )(command)
    command = click.option(
        "--workers",
        default=None,
        type=click.IntRange(min=1),
        help="Runs in parallel: local worker processes (default: one per CPU core) or Ray "
        "tasks in flight (default: the cluster's CPUs // threads).",
    )(command)
    command = click.option(
        "--executor",
        default="local",
        show_default=True,
        type=click.Choice(["local", "ray"]),
        help="Where runs train: local processes, or tasks on an existing Ray cluster.",
    )(command)
    command = click.option(
        "--address",
        default=None,
        help="Ray head address (default: $RAY_ADDRESS, else the cluster `ray start` started "
        "here); one where no head answers within 10 s is refused before OUT is touched.",
    )(command)
    command = click.option(
        "--threads",
        default=None,
        type=click.IntRange(min=1),
        help="Torch threads per worker (default 1: parallelism from --workers processes, which a "
        "busy machine slows in proportion; 1 per Ray task). Results are "
        "bit-identical across executors only at equal threads.",
    )(command)
    command = click.option(
        "--force-new",
        is_flag=True,
        help="OUT holds a different study, or this study on data or model files that changed "
        "since: add this one alongside it (runs with identical configs are shared, not "
        "retrained) instead of refusing.",
    )(command)
    command = click.option("--quiet", is_flag=True, help="No progress bar or per-run lines.")(
        command
    )
    command = click.option(
        "--pack",
        default="auto",
        show_default=True,
        type=click.Choice(PACK_MODES),
        help="auto: train the compatible runs of a cell (same model, norm, batch size, budget) "
        "as one packed model where the calibration measures it faster (the pack size is "
        "recorded in OUT/pack_rule.json and reused on resume); off: one by one.",
    )(command)
    command = click.option(
        "--device",
        default="auto",
        show_default=True,
        type=click.Choice(DEVICES),
        help="Where runs train; auto: cuda when torch.cuda.is_available(), else cpu. On CUDA "
        "TF32 is off and cuDNN deterministic; NORMLAB_TF32=1 turns TF32 on (faster, less exact).",
    )(command)
    return command


@cli.command()
@click.option("--quick", is_flag=True, help="Smoke-size study (under a minute on 2 cores).")
@click.option(
    "--data",
    default=None,
    metavar="PATH_OR_NAME",
    help="Dataset: a built-in name (normlab list datasets) or a path: a CIFAR-10/100 archive or "
    "folder, an image folder (root/<class>/*.png), or an .npz (x_train, y_train[, x_test, "
    "y_test]). Default: digits.",
)
@click.option(
    "--model",
    default=None,
    metavar="REF",
    help="Model: a built-in name (normlab list models), 'pkg.module:factory' or "
    "'path/to/file.py:factory' (returning a torch module or a Keras model: normlab[keras]). "
    "Default: the ResNet of the write-up's seed blocks.",
)
@click.option(
    "--max-train",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Train on a class-balanced subset of N training examples (fixed across runs).",
)
@click.option(
    "--max-eval",
    type=click.IntRange(min=1),
    default=None,
    metavar="M",
    help="Validate and test on class-balanced subsets of at most M examples each "
    "(default with --max-train: N; else every example).",
)
@click.option(
    "--augment",
    is_flag=True,
    help="Random crop (4-pixel padding) and horizontal flip, seeded per run and step.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan and an estimated time from a short calibration (adaptive: the rounds "
    "inside the budget and the effect each could detect); train and write nothing.",
)
@question_options
@execution_options
def run(
    quick: bool,
    data: str | None,
    model: str | None,
    max_train: int | None,
    max_eval: int | None,
    augment: bool,
    dry_run: bool,
    **execution: Any,
) -> None:
    """Run the default study: BN vs none vs LN vs GN across batch sizes, LR tuned per cell.

    On scikit-learn's digits with the write-up's ResNet unless --data / --model say otherwise.
    With --batch-size or --budget: the adaptive protocol at your batch sizes (plus a reference
    one), within your time. Resumes where it stopped if OUT already holds the same study (with
    a larger --budget, it continues the rounds).
    """
    question = question_from(*(execution.pop(key) for key in QUESTION_OPTIONS))
    spec = default_spec(quick, data, model, max_train, max_eval or max_train, augment, question)
    _plan_or_run(spec, dry_run, data_option="--data", **execution)


def _plan_or_run(
    spec: StudySpec, dry_run: bool, data_option: str = "[run] dataset", **execution: Any
) -> None:
    check_execution(execution["executor"], Execution(execution["pack"], execution["device"]))
    if dry_run:  # writes nothing: runs beside a study that holds OUT
        runs, dataset = check_study(spec, data_option=data_option)
        workers = execution["workers"] or os.cpu_count() or 1
        pack = execution["pack"]
        # A folder that already holds a study shows the pack sizes it recorded (packrule.py).
        recorded = load_choices(execution["out_dir"]) if pack == "auto" else {}
        estimate = estimate_time(runs, dataset, workers, execution["threads"], pack, recorded)
        for line in dry_run_lines(spec, runs, dataset, estimate, pack, workers):
            stdout.print(line, markup=False, soft_wrap=True)
        return
    # Integrity first, fast and without a trace: a held OUT and an unreachable Ray head are
    # refused before the data is loaded; the driver then holds OUT through the report.
    refuse_if_held(execution["out_dir"])
    if execution["executor"] == "ray":
        check_ray_reachable(execution["address"])
    with hold_folder(execution["out_dir"]):
        check_study(spec, data_option=data_option)  # every check before any training or write
        _run_and_report(spec, **execution)


@cli.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the expanded plan (cells, lr grids, run count) and an estimated time from a "
    "short calibration; train nothing, write nothing.",
)
@execution_options
def study(spec_file: str, dry_run: bool, **execution: Any) -> None:
    """Run the study described by SPEC_FILE (TOML); resumes an interrupted one."""
    _plan_or_run(load_spec(spec_file), dry_run, **execution)


def _run_and_report(
    spec: StudySpec,
    out_dir: str,
    workers: int | None,
    executor: str,
    quiet: bool,
    address: str | None,
    threads: int | None,
    force_new: bool,
    pack: str,
    device: str,
) -> None:
    """Run ``spec`` with the execution options of ``run``/``study``, then print and write the
    summary."""
    out_dir = Path(out_dir)
    if executor == "local":
        workers = workers or os.cpu_count() or 1
    where = f"{workers} worker(s)" if workers else "the Ray cluster"
    tracker = ProgressTracker()
    # Every column reads the tracker when rich refreshes (auto_refresh), not when a result
    # arrives: the clock ticks while packs train for minutes without a result.
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        TrackerBar(tracker),
        TrackerStatus(tracker),
        console=stderr,
        disable=quiet,
        refresh_per_second=2,
    )
    progress.add_task("runs", total=None)  # one row; its columns read the tracker

    def on_start(todo: int, finished: int) -> None:
        if not quiet:
            stderr.print(
                f"{spec.name}: {todo + finished} runs planned, {finished} already finished, "
                f"training {todo} with {where} -> {out_dir / STORE_NAME}"
            )
        # Started only now: an error while checking the store stays one line on stderr.
        progress.start()

    def on_result(run: PlannedRun, result: RunResult) -> None:
        if quiet:
            return
        config = run.config
        accuracy = f"{result.test_acc:.3f}" if result.test_acc is not None else "  -  "
        progress.console.print(
            f"{config.norm:<8} batch {config.batch_size:<4} lr {config.lr:<8g} seed {config.seed:<3}"
            f" test {accuracy}  {result.status:<8} {result.wall_time:6.1f}s"
        )

    try:
        outcome = run_study(
            spec,
            out_dir,
            workers=workers,
            executor=executor,
            address=address,
            threads=threads,
            force_new=force_new,
            progress=StudyProgress(on_start=on_start, on_result=on_result, tracker=tracker),
            execution=Execution(pack=pack, device=device),
            calibrate=True,
        )
    finally:
        if progress.live.is_started:  # stop() on a piped console prints a line even if unused
            progress.stop()
    tables = write_summary(out_dir, outcome.study_id, outcome.wall_time)
    for table in tables:
        stdout.print(_rich_table(table))
    if outcome.rounds is not None:
        stdout.print(outcome_text(outcome.rounds), markup=False, soft_wrap=True)
    stdout.print(
        f"{outcome.trained - outcome.failed} runs trained, {outcome.skipped} already finished, "
        f"{outcome.wall_time:.0f} s. Report: {out_dir / 'report.html'} (and report.md)"
    )
    if outcome.failed:
        click.echo(
            f"normlab: {outcome.failed} of {outcome.trained} runs failed (first error: "
            f"{outcome.first_error}); their tracebacks are in the store "
            f"({shlex.join(['normlab', 'export', str(out_dir)])}), and rerunning the same "
            "command retries them",
            err=True,
        )
        raise click.exceptions.Exit(1)


class TrackerBar(ProgressColumn):
    """The bar: runs finished out of runs to train (the total grows with the grid extension)."""

    def __init__(self, tracker: ProgressTracker) -> None:
        super().__init__()
        self.tracker = tracker

    def render(self, task: Task) -> ProgressBar:
        snapshot = self.tracker.snapshot()
        return ProgressBar(total=max(1, snapshot.total), completed=snapshot.finished, width=30)


class TrackerStatus(ProgressColumn):
    """Runs, elapsed clock, ETA and the packs in flight (``study.progress.status_text``)."""

    def __init__(self, tracker: ProgressTracker) -> None:
        super().__init__()
        self.tracker = tracker

    def render(self, task: Task) -> Text:
        return Text(status_text(self.tracker.snapshot()))


def write_summary(out_dir: Path, study_id: str, wall_time: float | None = None) -> list[Table]:
    """Write the reports of ``out_dir`` (report.html, report.md, figures); print the verdict of
    ``study_id`` and return its main tables for printing."""
    reports = write_reports(out_dir)
    with open_store(out_dir / STORE_NAME, create=False) as store:
        index = store.study_ids().index(study_id)
    paragraph, tables = terminal_summary(reports[index])
    stdout.print(paragraph, markup=False, soft_wrap=True)
    return tables


def _rich_table(table: Table) -> RichTable:
    rich_table = RichTable(title=table.title, title_justify="left")
    for column in table.header:
        rich_table.add_column(column)
    for row in table.rows:
        rich_table.add_row(*row)
    return rich_table


cli.add_command(bench)
cli.add_command(export)
cli.add_command(list_)
cli.add_command(diagnose)
cli.add_command(doctor)
cli.add_command(report_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line errors with exit code 2, Ctrl-C with exit code 130."""
    try:
        # Without standalone mode click returns a command's Exit code instead of raising it.
        code = cli.main(args=argv, prog_name="normlab", standalone_mode=False)
        if isinstance(code, int) and code:
            return code
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.UsageError as error:
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
        click.echo(f"normlab: error: {error.format_message()}{hint}", err=True)
        return 2
    except NormlabError as error:
        click.echo(f"normlab: error: {error}", err=True)
        return 2
    except (KeyboardInterrupt, click.Abort):
        click.echo(
            "normlab: interrupted; finished runs are kept, rerun the same command to resume",
            err=True,
        )
        return 130
    return 0


def entry_point() -> None:
    """Console script ``normlab``."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
