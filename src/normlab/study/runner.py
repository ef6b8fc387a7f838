"""Run a study: plan it, register it in the store, train what is not finished, resume-safe.

Runs already ``done`` or ``diverged`` are never trained again; ``pending``, ``running`` (the
process died mid-run) and ``failed`` runs are trained on the next call. Reusing an output folder
for a different spec is refused unless ``force_new``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from normlab.errors import NormlabError
from normlab.train import RunConfig, RunResult

from .executors import EXECUTORS, dataset_for, run_local
from .plan import PlannedRun, check_plan, cost_order, expand
from .spec import StudySpec
from .store import FINISHED, Store, open_store

STORE_NAME = "normlab.db"


@dataclass
class StudyProgress:
    """Callbacks the caller (the CLI) uses to show progress; all optional."""

    on_start: Callable[[int, int], None] | None = None
    """(runs to train now, runs already finished)."""
    on_result: Callable[[PlannedRun, RunResult], None] | None = None


@dataclass(frozen=True)
class StudyOutcome:
    study_id: str
    store_path: Path
    planned: int
    trained: int
    skipped: int
    wall_time: float


def prepare(spec: StudySpec, out_dir: Path, force_new: bool = False) -> tuple[Store, list[PlannedRun]]:
    """Plan ``spec``, check every run, open the store and register the study and its runs."""
    runs = expand(spec)
    dataset = dataset_for(runs[0].config)
    check_plan(runs, dataset)
    store = open_store(Path(out_dir) / STORE_NAME)
    others = [s for s in store.study_ids() if s != spec.study_id]
    if others and not force_new:
        store.close()
        raise NormlabError(
            f"{out_dir}: holds a different study ({others[0]}); use another --out or --force-new"
        )
    store.add_study(spec.study_id, spec.name, spec.to_dict())
    store.add_runs(spec.study_id, runs)
    return store, cost_order(runs, len(dataset.y_train))


def run_study(
    spec: StudySpec,
    out_dir: str | Path,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    progress: StudyProgress | None = None,
    force_new: bool = False,
) -> StudyOutcome:
    """Train every unfinished run of ``spec`` into ``out_dir/normlab.db``."""
    if executor not in EXECUTORS:
        raise NormlabError(f"--executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    progress = progress or StudyProgress()
    started = time.perf_counter()
    store, runs = prepare(spec, Path(out_dir), force_new)
    with store:
        statuses = store.statuses()
        todo = [run for run in runs if statuses[run.config.run_id] not in FINISHED]
        by_id = {run.config.run_id: run for run in todo}
        if progress.on_start:
            progress.on_start(len(todo), len(runs) - len(todo))
        store.mark_running(by_id)

        def on_result(config: RunConfig, result: RunResult) -> None:
            store.record(result)
            if progress.on_result:
                progress.on_result(by_id[config.run_id], result)

        try:
            run_local([run.config for run in todo], workers, on_result)
        finally:
            # Runs still marked running did not finish (interrupt or crash): retry on resume.
            store.mark_pending(by_id)
    return StudyOutcome(
        spec.study_id,
        Path(out_dir) / STORE_NAME,
        planned=len(runs),
        trained=len(todo),
        skipped=len(runs) - len(todo),
        wall_time=time.perf_counter() - started,
    )
