"""Studies: specs (TOML), plans (grid x LR protocol x seeds), the SQLite store, executors."""

from .defaults import default_spec, preset_path
from .load import load_spec, spec_from_dict
from .plan import PlannedRun, expand
from .runner import STORE_NAME, StudyOutcome, StudyProgress, run_study
from .spec import LrProtocol, StudySpec
from .store import SCHEMA_VERSION, Store, open_store

__all__ = [
    "SCHEMA_VERSION",
    "STORE_NAME",
    "LrProtocol",
    "PlannedRun",
    "Store",
    "StudyOutcome",
    "StudyProgress",
    "StudySpec",
    "default_spec",
    "expand",
    "load_spec",
    "open_store",
    "preset_path",
    "run_study",
    "spec_from_dict",
]
