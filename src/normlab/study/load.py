"""Reading a study: a TOML file (or parsed TOML) -> a validated :class:`~.spec.StudySpec`.

The top of the spec modules: :mod:`.spec` holds the plain data, :mod:`.parse` builds it key by
key, :mod:`.checks` judges values and level combinations; this module reads the file and ties
them together. The format is documented in :mod:`normlab.study.spec` and ``docs/SPECS.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from normlab.errors import NormlabError

from .locate import SpecOrigin, key_lines
from .parse import parse_spec
from .spec import StudySpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load_spec(path: str | Path) -> StudySpec:
    """Parse and validate a study TOML file; errors name the file, the line and the key."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NormlabError(f"{path}: no such study file") from None
    except (IsADirectoryError, UnicodeDecodeError) as error:
        raise NormlabError(f"{path}: cannot read the study file ({error})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise NormlabError(f"{path}: invalid TOML: {error}") from None
    return spec_from_dict(data, source=str(path), text=text)


def spec_from_dict(
    data: dict[str, Any], source: str = "spec", text: str | None = None
) -> StudySpec:
    """Build and validate a :class:`StudySpec` from parsed TOML.

    ``text``, the TOML ``data`` was parsed from, gives error messages their line numbers.
    """
    return parse_spec(data, SpecOrigin(source, key_lines(text) if text else {}))
