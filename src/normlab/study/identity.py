"""Which id a study has in a store: its spec's, or a variant's on changed data or model files.

A study is identified by the content hash of its spec (:attr:`.spec.StudySpec.study_id`). A study
already in the store whose data or model files changed since is refused, naming the first
changed file, unless ``force_new``: then the study on the new files is added alongside under an
id derived from the spec's and the fingerprints (:func:`variant_id`), which later calls of the
same command resume.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from normlab.data import changed_files, data_fingerprint
from normlab.data.fingerprint import FileRecord
from normlab.errors import NormlabError
from normlab.train.model_files import model_fingerprint

from .spec import StudySpec
from .store import Store


def variant_id(study_id: str, data_files: Sequence[FileRecord], model: Sequence[FileRecord]) -> str:
    """The id of a study added alongside ``study_id`` on other data or model files."""
    text = "\n".join([study_id, data_fingerprint(data_files), model_fingerprint(model)])
    return hashlib.sha256(text.encode()).hexdigest()[: len(study_id)]


def study_id_in(
    store: Store,
    spec: StudySpec,
    out_dir: Path,
    data_files: Sequence[FileRecord],
    model: Sequence[FileRecord],
    force_new: bool,
) -> str:
    """The id this spec's study has (or gets) in ``store``, refusing changed files."""
    studies = store.study_ids()
    if studies and spec.study_id not in studies and not force_new:
        held = store.study_name(studies[-1])
        raise NormlabError(
            f"{out_dir} holds a different study ({held!r}; this spec is {spec.name!r}): "
            "use another --out, or --force-new to add this study alongside it"
        )
    changed = _changed(store, spec.study_id, data_files, model)
    if changed is None:
        return spec.study_id
    variant = variant_id(spec.study_id, data_files, model)
    if force_new or (variant in studies and _changed(store, variant, data_files, model) is None):
        return variant
    path, kind = changed
    raise NormlabError(
        f"{path}: {kind} changed since study {spec.name!r} started in {out_dir} (size or content "
        "differ); restore the original file, use another --out, or --force-new to start the "
        "study on the new files alongside"
    )


def _changed(
    store: Store, study_id: str, data_files: Sequence[FileRecord], model: Sequence[FileRecord]
) -> tuple[str, str] | None:
    """(the first data or model file of ``study_id`` that differs now, "data file" or "model
    file"); None when none does or nothing is recorded (a new study, built-in data, a study
    recorded before schema v7 for its model)."""
    recorded_data = store.study_data_files(study_id)
    if recorded_data is not None:
        changed = changed_files(recorded_data, data_files)
        if changed:
            return changed[0], "data file"
    recorded_model = store.study_model(study_id)
    if recorded_model is not None:
        changed = changed_files(recorded_model[0], model)
        if changed:
            return changed[0], "model file"
    return None
