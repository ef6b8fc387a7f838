"""The default study of ``normlab run`` (the bundled ``default`` or ``quick`` preset), on the
data and model the command names."""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

from normlab.data import DATASETS
from normlab.errors import NormlabError
from normlab.train import check_model_ref
from normlab.train.model_ref import absolute_ref

from .load import spec_from_dict
from .spec import StudySpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def preset_path(name: str) -> Path:
    """Path of a bundled study spec (``default`` or ``quick``)."""
    return Path(str(files("normlab.study") / "presets" / f"{name}.toml"))


def default_spec(
    quick: bool,
    data: str | None,
    model: str | None,
    max_train: int | None,
    max_eval: int | None,
    augment: bool,
) -> StudySpec:
    """The default (or quick) study, on ``data`` with ``model`` when given."""
    path = preset_path("quick" if quick else "default")
    text = path.read_text()
    values = tomllib.loads(text)
    run_table = values.setdefault("run", {})
    if data is not None:
        run_table["dataset"] = data_reference(data)
    if model is not None:
        try:
            check_model_ref(model)
        except NormlabError as error:
            raise NormlabError(f"--model {model}: {error}") from None
        run_table["model"] = absolute_ref(model)
        for key in ("depth", "widths"):  # the seed ResNet's shape; other models have their own
            if model != "resnet":
                run_table.pop(key, None)
    options = {"max_train_examples": max_train, "max_eval_examples": max_eval}
    for key, value in options.items():
        if value is not None:
            run_table.setdefault("dataset_options", {})[key] = value
    if augment:
        run_table["augment"] = True
    given = (data, model, max_train, max_eval, augment)
    if given != (None, None, None, None, False):
        on = [Path(data).name if data else "digits", f"model {model}" if model else None]
        on += [f"{max_train} training examples" if max_train else None]
        on += ["augmented" if augment else None]
        name = values["study"]["name"].split(" on ")[0]
        values["study"]["name"] = f"{name} on {', '.join(x for x in on if x)}"
    if given == (None, None, None, None, False):
        return spec_from_dict(values, source=str(path), text=text)
    return spec_from_dict(values, source=f"normlab run (preset {path.stem} with the options given)")


def data_reference(data: str) -> str:
    """A dataset name as it is; a path made absolute, so that the study does not depend on the
    folder it was started from."""
    if data in DATASETS:
        return data
    path = Path(data).expanduser()
    if not path.exists():
        raise NormlabError(
            f"--data {data}: no such file or folder, and not a dataset name ({', '.join(DATASETS)})"
        )
    return str(path.resolve())
