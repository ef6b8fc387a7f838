"""Studies: specs (TOML), plans (grid x LR protocol x seeds), the SQLite store, executors."""

from importlib.resources import files
from pathlib import Path

from .load import load_spec, spec_from_dict
from .plan import PlannedRun, expand
from .runner import STORE_NAME, StudyOutcome, StudyProgress, run_study
from .spec import LrProtocol, StudySpec
from .store import SCHEMA_VERSION, Store, open_store


def preset_path(name: str) -> Path:
    """Path of a bundled study spec (``default`` or ``quick``)."""
    return Path(str(files("normlab.study") / "presets" / f"{name}.toml"))


__all__ = [
    "SCHEMA_VERSION",
    "STORE_NAME",
    "LrProtocol",
    "PlannedRun",
    "Store",
    "StudyOutcome",
    "StudyProgress",
    "StudySpec",
    "expand",
    "load_spec",
    "open_store",
    "preset_path",
    "run_study",
    "spec_from_dict",
]
