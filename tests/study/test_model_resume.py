"""Resuming a study whose model file (or a module it imports) changed is refused naming the
file; an unchanged model resumes; ``force_new`` starts the study on the new model alongside;
a store recorded before model fingerprints (schema v6) still resumes."""

from __future__ import annotations

import json
import sqlite3
import textwrap

import pytest

from normlab.errors import NormlabError
from normlab.study import STORE_NAME, open_store, run_study, spec_from_dict
from normlab.study.store import SCHEMA_VERSION

LAYERS = """
from torch import nn

WIDTH = 4


def block(in_channels):
    return nn.Sequential(nn.Conv2d(in_channels, WIDTH, 3, padding=1), nn.BatchNorm2d(WIDTH), nn.ReLU())
"""
NET = """
from torch import nn

from layers import WIDTH, block


def make_net(num_classes, in_channels):
    return nn.Sequential(block(in_channels), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(WIDTH, num_classes))
"""


@pytest.fixture
def model(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "layers.py").write_text(textwrap.dedent(LAYERS))
    (folder / "net.py").write_text(textwrap.dedent(NET))
    return folder


def spec_for(folder):
    return spec_from_dict(
        {
            "study": {"name": "file model", "seeds": [0]},
            "run": {
                "dataset": "synthetic",
                "dataset_options": {"num_examples": 96, "num_classes": 3, "size": 8},
                "model": f"{folder / 'net.py'}:make_net",
                "epochs": 1,
                "batch_size": 16,
            },
            "factors": {"norm": ["bn"]},
            "lr": {"mode": "fixed", "base_lr": 0.05},
        }
    )


def study(spec, out, **options):
    return run_study(spec, out, workers=1, threads=1, **options)


def test_an_unchanged_model_resumes_and_a_changed_one_is_refused_naming_it(model, tmp_path):
    out = tmp_path / "out"
    spec = spec_for(model)
    assert study(spec, out).trained == 1
    assert (study(spec, out).trained, study(spec, out).skipped) == (0, 1)
    net = model / "net.py"
    original = net.read_text()
    net.write_text(original.replace("nn.Flatten(),", "nn.Flatten(), nn.Dropout(0.1),"))
    before = (out / STORE_NAME).read_bytes()
    with pytest.raises(NormlabError, match=f"^{net}: model file changed since study"):
        study(spec, out)
    assert (out / STORE_NAME).read_bytes() == before
    net.write_text(original)
    assert study(spec, out).trained == 0  # restored: resumes


def test_a_changed_imported_module_is_refused_then_force_new_runs_alongside(model, tmp_path):
    out = tmp_path / "out"
    spec = spec_for(model)
    first = study(spec, out)
    layers = model / "layers.py"
    layers.write_text(layers.read_text().replace("WIDTH = 4", "WIDTH = 6"))
    with pytest.raises(NormlabError, match=f"^{layers}: model file changed.*--force-new"):
        study(spec, out)
    alongside = study(spec, out, force_new=True)
    assert alongside.trained == 1 and alongside.study_id != first.study_id
    again = study(spec, out)  # the same command now resumes the study on the new model
    assert (again.study_id, again.trained) == (alongside.study_id, 0)
    with open_store(out / STORE_NAME, create=False) as store:
        assert store.study_ids() == [first.study_id, alongside.study_id]
        old, new = (store.records(s)[0] for s in store.study_ids())
    assert old["run_id"] != new["run_id"]  # different models, different runs
    assert old["config"]["model_fingerprint"] != new["config"]["model_fingerprint"]


def test_a_store_from_before_model_fingerprints_resumes_then_guards_its_model(
    model, tmp_path, monkeypatch
):
    """A v6 store: runs without ``model_fingerprint``, studies without model columns."""
    import normlab.study.runner as runner

    out = tmp_path / "out"
    spec = spec_for(model)
    monkeypatch.setattr(runner, "model_files", lambda ref: ())  # what normlab did before v7
    study(spec, out)
    monkeypatch.undo()
    with sqlite3.connect(out / STORE_NAME) as db:
        db.execute("ALTER TABLE studies DROP COLUMN model_files")
        db.execute("ALTER TABLE studies DROP COLUMN model_fingerprint")
        db.execute("ALTER TABLE runs DROP COLUMN role")  # v8's, as a v6 store had neither
        db.execute("ALTER TABLE runs DROP COLUMN round")
        db.execute("DELETE FROM schema_version WHERE version >= 7")
    db.close()
    with sqlite3.connect(out / STORE_NAME) as db:  # read as it is, not migrated
        ((config,),) = db.execute("SELECT config FROM runs").fetchall()
    db.close()
    assert json.loads(config)["model_fingerprint"] == ""
    outcome = study(spec, out)  # migrates to v7 and on, keeps the run's id: nothing to train
    assert (outcome.trained, outcome.skipped) == (0, 1)
    with open_store(out / STORE_NAME, create=False) as store:
        files, fingerprint = store.study_model(spec.study_id)
    assert SCHEMA_VERSION >= 7 and fingerprint == "" and len(files) == 2  # adopted: net, layers
    (model / "layers.py").write_text("WIDTH = 5\n")
    with pytest.raises(NormlabError, match="layers.py: model file changed"):
        study(spec, out)
