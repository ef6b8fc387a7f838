"""Run a study: plan it, register it in the store, train what is not finished, resume-safe.

Runs already ``done`` or ``diverged`` are never trained again; ``pending``, ``running`` (the
process died mid-run) and ``failed`` runs are trained on the next call.

A study is identified by the content hash of its spec. An output folder that holds other studies
but not this one is refused unless ``force_new``: then the study is added alongside the others
(nothing is deleted), its records are those linked to its id, and runs it shares with them (same
config, hence same ``run_id``) are reused rather than retrained. Running a spec already in the
folder resumes it, with or without ``force_new``.

Progress: the runner feeds a :class:`~.progress.ProgressTracker` (units of work added, each run
dispatched and finished; runs the lr grid extension adds grow the total). With ``calibrate``, it
first times the study's configurations as the dry run does (:func:`.dryrun.estimate_time`): the
units' calibrated costs drive the tracker's ETA, and the estimate is kept in the store for the
report. The calibration times the CPU: runs on a GPU, or a configuration that cannot be timed,
go without it (the ETA then waits for the first finished unit).

Pack sizes (``--pack auto``) are decided before the units are cut: recorded in the folder by
an earlier leg, else measured by the calibration, else the fixed rule
(``calibrate.decide_pack_sizes``, ``packrule.py``); the executors receive them in
``Execution.pack_sizes``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from normlab.data import Dataset, data_fingerprint
from normlab.errors import NormlabError
from normlab.train import RunConfig, RunResult, total_steps
from normlab.train.device import resolve_device
from normlab.train.model_files import model_files, model_fingerprint
from normlab.train.model_ref import model_format

from .budget import Budget, CostModel
from .calibrate import decide_pack_sizes
from .diagnose import DEFAULT_DIAGNOSTICS
from .dryrun import Estimate, estimate_time
from .executors import check_execution, check_options, default_threads, execute
from .extend import extend_grids
from .identity import study_id_in
from .lock import hold_folder
from .packrule import PackChoice, load_choices
from .plan import PlannedRun, check_plan, cost_order, expand
from .progress import ProgressTracker
from .ray_executor import check_ray_reachable
from .rounds import RoundsOutcome, check_budget, run_adaptive
from .spec import StudySpec
from .store import FINISHED, Store, open_store
from .work import Execution, dataset_for, work_units

STORE_NAME = "normlab.db"
WEIGHTS_FOLDER = "weights"


@dataclass
class StudyProgress:
    """Callbacks the caller (the CLI) uses to show progress; all optional."""

    on_start: Callable[[int, int], None] | None = None
    """(runs to train now, runs already finished)."""
    on_result: Callable[[PlannedRun, RunResult], None] | None = None
    tracker: ProgressTracker = field(default_factory=ProgressTracker)
    """Fed by the runner; a display reads its snapshots (:mod:`.progress`)."""


@dataclass(frozen=True)
class StudyOutcome:
    study_id: str
    store_path: Path
    planned: int
    trained: int
    skipped: int
    wall_time: float
    failed: int = 0
    """Runs of this call that raised or whose worker died (retried by the next call)."""
    diverged: int = 0
    """Runs of this call recorded as diverged (a result, not an error)."""
    first_error: str | None = None
    """The last line of the first failed run's error, for the one-line summary."""
    rounds: RoundsOutcome | None = None
    """The adaptive protocol's rounds in this call (None under the fixed protocol)."""


def prepare(
    spec: StudySpec, out_dir: Path, force_new: bool = False
) -> tuple[Store, str, list[PlannedRun]]:
    """Plan ``spec``, check every run, open the store and register the study and its runs;
    returns the store, the study's id in it and the runs in cost order.

    The data files and the model files (``train/model_files.py``) are fingerprinted before the
    store is opened. A study already in the store whose files changed is refused, naming the
    first changed file, unless ``force_new``: then the study on the new files is added alongside
    under an id derived from the spec's and the fingerprints (:func:`variant_id`), which later
    calls of the same command resume.
    """
    runs = expand(spec)
    dataset = dataset_for(runs[0].config)
    data_print = data_fingerprint(dataset)
    refs = sorted({run.config.model for run in runs})
    files_by_ref = {ref: model_files(ref) for ref in refs}
    model_records = sorted({record for files in files_by_ref.values() for record in files})
    model_prints = {ref: model_fingerprint(files) for ref, files in files_by_ref.items()}
    runs = _with_model_format(runs, dataset)
    check_plan(runs, dataset)
    store = open_store(Path(out_dir) / STORE_NAME)
    try:
        study_id = study_id_in(store, spec, out_dir, dataset.files, model_records, force_new)
    except NormlabError:
        store.close()
        raise
    recorded = store.study_model(study_id)
    if recorded is None and study_id in store.study_ids():
        # Recorded before schema v7: its runs carry no model fingerprint; keep their ids, and
        # record today's files so that a later change is refused.
        store.adopt_model(study_id, model_records)
        recorded = (model_records, "")
    if recorded is not None and not recorded[1]:
        model_prints = dict.fromkeys(refs, "")
    runs = [
        replace(
            r,
            config=r.config.replace(
                data_fingerprint=data_print, model_fingerprint=model_prints[r.config.model]
            ),
        )
        for r in runs
    ]
    store.add_study(
        study_id,
        spec.name,
        spec.to_dict(),
        dataset.files,
        model_records,
        model_fingerprint(model_records),
    )
    if spec.adaptive is not None and store.study_spec(study_id) != spec.to_dict():
        store.set_spec(study_id, spec.to_dict())  # same identity, another budget
    store.add_runs(study_id, runs)
    return store, study_id, cost_order(runs, len(dataset.y_train))


def _with_model_format(runs: list[PlannedRun], dataset: Dataset) -> list[PlannedRun]:
    """Mark the runs of a factory that returns a Keras model (``RunConfig.model_format``)."""
    formats = {
        ref: model_format(
            ref,
            num_classes=dataset.num_classes,
            in_channels=dataset.in_channels,
            input_shape=dataset.input_shape,
        )
        for ref in dict.fromkeys(run.config.model for run in runs)
    }
    return [
        replace(run, config=run.config.replace(model_format=formats[run.config.model]))
        if formats[run.config.model]
        else run
        for run in runs
    ]


def run_study(
    spec: StudySpec,
    out_dir: str | Path,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    progress: StudyProgress | None = None,
    force_new: bool = False,
    threads: int | None = None,
    execution: Execution | None = None,
    calibrate: bool = False,
) -> StudyOutcome:
    """Train every unfinished run of ``spec`` into ``out_dir/normlab.db``.

    ``workers``: units of work in flight (local default: one per core; Ray default: the
    cluster's CPUs // threads). ``threads``: torch threads per unit (local default: cores //
    workers; Ray: 1). ``execution``: packing and device (``work.Execution``); with packing on,
    a unit is a pack of compatible runs, whose results all arrive when the pack finishes. It
    gets the spec's observation options (:func:`observed`). ``calibrate``: time the runs to
    train before training them (as ``--dry-run`` does), for the ETA and the report's estimate;
    local executor on the CPU only.
    """
    check_options(executor, workers, threads)
    execution = execution or Execution()
    check_execution(executor, execution)  # before the store is touched
    threads = threads or default_threads(executor, workers)
    progress = progress or StudyProgress()
    started = time.perf_counter()
    if executor == "ray":
        check_ray_reachable(address)  # before the folder or the store is touched
    with hold_folder(out_dir):
        return _run_held(
            spec,
            Path(out_dir),
            workers,
            executor,
            address,
            progress,
            force_new,
            threads,
            execution,
            started,
            calibrate,
        )


def _run_held(
    spec: StudySpec,
    out_dir: Path,
    workers: int | None,
    executor: str,
    address: str | None,
    progress: StudyProgress,
    force_new: bool,
    threads: int,
    execution: Execution,
    started: float,
    calibrate: bool,
) -> StudyOutcome:
    """:func:`run_study` once the driver holds ``out_dir``."""
    store, study_id, runs = prepare(spec, out_dir, force_new)
    with store:
        statuses = store.statuses()
        todo = [run for run in runs if statuses[run.config.run_id] not in FINISHED]
        finished_before = len(runs) - len(todo)
        if spec.adaptive is not None:  # its evaluation runs are not in the plan
            finished_before = sum(r["status"] in FINISHED for r in store.records(study_id))
        by_id = {run.config.run_id: run for run in todo}
        if progress.on_start:
            progress.on_start(len(todo), finished_before)
        tracker = progress.tracker
        recorded = load_choices(out_dir) if execution.pack == "auto" else {}
        estimate = None
        adaptive = spec.adaptive
        calibrate = calibrate or (adaptive is not None and adaptive.budget is not None)
        # Ray trains on the cluster's machines: timing this one would say nothing about them.
        if calibrate and todo and executor == "local" and _on_cpu(execution):
            tracker.set_phase("calibrating")
            estimate = _calibrate(
                store, study_id, runs, todo, execution.pack, workers, threads, recorded
            )
        measured = estimate.pack_choices if estimate is not None else {}
        execution = decide_pack_sizes(
            execution, [run.config for run in todo], recorded, measured, out_dir
        )
        # The executors cut the same units from the same configs (work.work_units).
        units = work_units([run.config for run in todo], execution.pack, dict(execution.pack_sizes))
        tracker.add([[c.run_id for c in unit] for unit in units], unit_costs(units))
        if estimate is not None:
            pace = estimate.wall_seconds / max(estimate.total_seconds, 1e-9)
            tracker.set_calibration(pace, unit_costs(units, estimate))
        counts = {"failed": 0, "diverged": 0}
        errors: list[str] = []

        def on_dispatch(config: RunConfig) -> None:
            store.mark_running([config.run_id])
            tracker.dispatched(config.run_id)

        def on_result(config: RunConfig, result: RunResult) -> None:
            tracker.finished(config.run_id)
            store.record(result, threads=threads)
            if result.status in counts:
                counts[result.status] += 1
            if result.status == "failed" and result.error:
                errors.append(result.error.strip().splitlines()[-1])
            if progress.on_result:
                progress.on_result(by_id[config.run_id], result)

        def train(batch: list[PlannedRun], phase: str | None = None) -> None:
            by_id.update((run.config.run_id, run) for run in batch)
            if batch is not todo:  # runs the grid extension or a round added: the total grows
                added = work_units(
                    [run.config for run in batch], execution.pack, dict(execution.pack_sizes)
                )
                tracker.add(
                    [[c.run_id for c in unit] for unit in added], unit_costs(added, estimate)
                )
            tracker.set_phase(phase or ("training" if batch is todo else "extending lr grids"))
            execute(
                executor,
                [run.config for run in batch],
                on_result,
                workers=workers,
                threads=threads,
                address=address,
                on_dispatch=on_dispatch,
                execution=observed(execution, spec, out_dir),
            )

        extended, rounds = 0, None
        if adaptive is not None:
            spent = sum(store.legs(study_id))
            budget = Budget(adaptive.budget_seconds, spent, time.perf_counter, started)
            records = store.records(study_id)
            costs = CostModel(
                _unit_cost(estimate),
                workers or os.cpu_count() or 1,
                execution.pack,
                records,
                dict(execution.pack_sizes),
            )
            # Refused: no leg, nothing trained.
            check_budget(spec, runs, records, costs, budget, dataset_for(runs[0].config))
            tracker.set_budget(budget.total, spent)
        try:
            if adaptive is not None:  # tuning, then evaluation rounds (study/rounds.py)
                rounds = run_adaptive(spec, store, study_id, runs, todo, train, costs, budget)
                extended = rounds.trained - len(todo)
            else:
                train(todo)
                # Cells whose selected lr sits at a grid edge get values beyond it (extend.py).
                extended = extend_grids(spec, store, runs, train, study_id)
        finally:
            # Runs still marked running did not finish (interrupt or crash): retry on resume.
            store.mark_pending(by_id)
            # Each invocation is one leg; the report adds them up (a resume is not the whole study).
            store.add_leg(study_id, time.perf_counter() - started)
    return StudyOutcome(
        study_id,
        out_dir / STORE_NAME,
        planned=len(runs),
        trained=len(todo) + extended,
        skipped=finished_before,
        wall_time=time.perf_counter() - started,
        failed=counts["failed"],
        diverged=counts["diverged"],
        first_error=errors[0] if errors else None,
        rounds=rounds,
    )


def _calibrate(
    store: Store,
    study_id: str,
    runs: list[PlannedRun],
    todo: list[PlannedRun],
    pack: str,
    workers: int | None,
    threads: int,
    recorded: dict[str, PackChoice],
) -> Estimate | None:
    """Time ``todo`` as the dry run does and keep the estimate in the store (the first one of
    the study stays: a resume's covers only what was left). None if a configuration cannot be
    timed: the estimate is a courtesy, and training records such a run as failed, with its
    traceback, where the calibration could only stop the study."""
    workers = workers or os.cpu_count() or 1
    try:
        estimate = estimate_time(
            todo, dataset_for(todo[0].config), workers, threads, pack, recorded=recorded
        )
    except Exception:
        return None
    record = {
        "wall_seconds": estimate.wall_seconds,
        "one_worker_seconds": estimate.total_seconds,
        "runs": len(todo),
        "planned": len(runs),
        "units": estimate.units,
        "workers": workers,
        "threads": threads,
        "pack": pack,
        "calibration_seconds": estimate.calibration_seconds,
        "legs_before": len(store.legs(study_id)),
    }
    store.set_estimate(study_id, record)
    return estimate


def _unit_cost(estimate: Estimate | None) -> Callable[[list[RunConfig]], float | None]:
    """The calibrated one-worker seconds of a unit (None without a calibration)."""
    return (lambda unit: None) if estimate is None else estimate.unit_seconds


def _on_cpu(execution: Execution) -> bool:
    """Whether runs train on this machine's kind of device: the calibration times the CPU."""
    return execution.device == "cpu" or (
        execution.device == "auto" and resolve_device("auto") == "cpu"
    )


def unit_costs(units: list[list[RunConfig]], estimate: Estimate | None = None) -> list[float]:
    """Each unit's cost for the ETA: calibrated seconds on one worker; for a unit the
    calibration did not cover, its runs at the mean calibrated cost per run. Without an
    estimate, the runs' training examples (a relative cost)."""
    if estimate is None:
        examples = len(dataset_for(units[0][0]).y_train) if units else 0
        return [float(sum(total_steps(c, examples) * c.batch_size for c in unit)) for unit in units]
    per_run = estimate.total_seconds / max(1, len(estimate.run_seconds))
    return [
        seconds if (seconds := estimate.unit_seconds(unit)) is not None else per_run * len(unit)
        for unit in units
    ]


def observed(execution: Execution, spec: StudySpec, out_dir: Path) -> Execution:
    """``execution`` with the diagnostics every study records (``gap``, ``stability``), those
    the spec adds, and ``out_dir/weights`` as the weights folder when the spec keeps weights."""
    kinds = (*DEFAULT_DIAGNOSTICS, *spec.diagnostics, *execution.diagnostics)
    weights_dir = execution.weights_dir
    if weights_dir is None and spec.keep_weights:
        weights_dir = str(out_dir / WEIGHTS_FOLDER)
    return replace(execution, diagnostics=tuple(dict.fromkeys(kinds)), weights_dir=weights_dir)
