"""The default study of ``normlab run`` (the bundled ``default`` or ``quick`` preset), on the
data and model the command names."""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

from normlab.data import DATASETS
from normlab.errors import NormlabError
from normlab.train import RunConfig, check_model_ref
from normlab.train.model_ref import absolute_ref

from .load import spec_from_dict
from .question import Question, apply_question
from .spec import StudySpec
from .work import dataset_for

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
    question: Question | None = None,
) -> StudySpec:
    """The default (or quick) study, on ``data`` with ``model`` when given, asking ``question``
    (batch sizes, norms, budget: :mod:`.question`)."""
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
    question = question or Question()
    asked: list[str] = []
    if question != Question():
        num_train = None
        if question.batch_sizes is not None and question.reference_batch_size is None:
            config = RunConfig(
                dataset=run_table.get("dataset", RunConfig.dataset),
                dataset_options=run_table.get("dataset_options", {}),
            )
            num_train = len(dataset_for(config).y_train)  # loaded once per process
        asked = apply_question(values, question, num_train, quick)
    given = (data, model, max_train, max_eval, augment)
    if given != (None, None, None, None, False) or asked:
        on = [Path(data).name if data else "digits", f"model {model}" if model else None]
        on += [f"{max_train} training examples" if max_train else None]
        on += ["augmented" if augment else None]
        name = values["study"]["name"].split(" on ")[0]
        values["study"]["name"] = f"{name} on {', '.join([*(x for x in on if x), *asked])}"
    if given == (None, None, None, None, False) and not asked:
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
