"""Users' data and models end to end: `normlab run --data ARCHIVE`, a study on model factories
from a file, Python-registered data and models with two worker processes, and resuming on a
data file that changed."""

import contextlib
import io
import json
import pickle
import re
import shlex
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from normlab.cli import main
from normlab.data.fingerprint import file_record
from normlab.data.shapes import shapes_arrays

USER_MODELS = Path(__file__).with_name("user_models.py")


def normlab(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "normlab.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def write_cifar_archive(path: Path, train: int = 150, test: int = 50) -> Path:
    """A CIFAR-10 python archive of the shapes task (5 train batches, 1 test batch)."""
    images, labels = shapes_arrays(train + test, seed=1)
    low, high = images.min(), images.max()
    data = np.round((images - low) / (high - low) * 255).astype(np.uint8).reshape(len(images), -1)
    parts = {f"data_batch_{i + 1}": p for i, p in enumerate(np.array_split(np.arange(train), 5))}
    parts["test_batch"] = np.arange(train, train + test)
    with tarfile.open(path, "w:gz") as archive:
        for name, index in parts.items():
            blob = pickle.dumps({b"data": data[index], b"labels": labels[index].tolist()}, 2)
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = len(blob)
            archive.addfile(member, io.BytesIO(blob))
    return path


@pytest.fixture(scope="module")
def archive_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar")
    archive = write_cifar_archive(folder / "cifar-10-python.tar.gz")
    out = folder / "out"
    # Two norms of the quick study's four (16 runs; the calibration times each configuration
    # at 32x32), and not about packing: --pack off spares timing the packs too.
    args = ["run", "--quick", "--data", str(archive), "--max-train", "80", "--norms", "bn,gn"]
    args += ["--out", str(out)]
    # The driver in-process (main() is what the process exits with; the refusal below runs one),
    # the runs in two spawned workers that load the archive themselves.
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([*args, "--workers", "2", "--threads", "1", "--pack", "off"])
    result = subprocess.CompletedProcess([], code, stdout.getvalue(), stderr.getvalue())
    return archive, out, args, result


def test_run_on_a_cifar_archive_trains_every_run_and_records_the_file(archive_run):
    archive, out, _, result = archive_run
    assert result.returncode == 0, result.stderr
    assert "cifar-10-python.tar.gz" in result.stderr  # the study is named after its data
    with sqlite3.connect(out / "normlab.db") as db:
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
        (files,) = db.execute("SELECT data_files FROM studies").fetchone()
        configs = [json.loads(c) for (c,) in db.execute("SELECT config FROM runs")]
    assert sum(statuses.values()) == 16 and set(statuses) <= {"done", "diverged"}
    assert [tuple(f) for f in json.loads(files)] == [file_record(archive)]
    assert {c["dataset"] for c in configs} == {str(archive)}
    assert {c["dataset_options"]["max_train_examples"] for c in configs} == {80}
    assert len({c["data_fingerprint"] for c in configs}) == 1 and configs[0]["data_fingerprint"]


def test_resuming_on_a_changed_data_file_is_refused_naming_it(archive_run, capsys):
    archive, out, args, first = archive_run
    assert first.returncode == 0, first.stderr
    before = (out / "normlab.db").read_bytes()
    original = archive.read_bytes()
    try:
        write_cifar_archive(archive, train=160)  # same name, other content
        result = normlab(*args, "--workers", "1")
    finally:
        archive.write_bytes(original)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(archive) in result.stderr
    assert "changed since" in result.stderr
    assert (out / "normlab.db").read_bytes() == before
    # Restored: resumes with nothing to train (in-process: the refusal above is the real process).
    assert main([*args, "--workers", "1"]) == 0
    assert "0 runs trained, 16 already finished" in capsys.readouterr().out


STUDY = """
[study]
name = "factories"
seeds = 1
[run]
dataset = "synthetic"
dataset_options = {{ num_examples = 120, num_classes = 3, channels = 3, size = 8 }}
model = "{model}"
epochs = 1
[factors]
norm = ["bn", "gn"]
batch_size = [8]
[run.norm_options.gn]
groups = 2
[lr]
mode = "fixed"
base_lr = 0.05
"""


def test_a_study_on_model_factories_from_a_file(tmp_path, capsys):
    # Both factories in one study (a `model` factor): one process instead of one per factory.
    factories = ["with_norm", "plain_bn"]
    refs = [f"{USER_MODELS}:{factory}" for factory in factories]
    spec = tmp_path / "study.toml"
    text = STUDY.format(model=refs[0]).replace(f'model = "{refs[0]}"\n', "")
    spec.write_text(text.replace("[factors]\n", f"[factors]\nmodel = {json.dumps(refs)}\n"))
    # In-process: main() is what `python -m normlab.cli` exits with.
    code = main(["study", str(spec), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    with sqlite3.connect(tmp_path / "out" / "normlab.db") as db:
        rows = db.execute("SELECT config, status FROM runs").fetchall()
    configs = [(json.loads(config), status) for config, status in rows]
    for ref in refs:  # each factory: every norm trained, and the reference recorded as given
        by_norm = {c["norm"]: status for c, status in configs if c["model"] == ref}
        assert set(by_norm) == {"bn", "gn"} and all(s == "done" for s in by_norm.values())
    assert len(configs) == 4


# Refusals in-process (main() is what `python -m normlab.cli` exits with): a fresh process
# refusing in one line is checked by test_resuming_on_a_changed_data_file_is_refused_naming_it.
def test_a_model_without_normalization_is_refused_before_training(tmp_path, capsys):
    spec = tmp_path / "study.toml"
    spec.write_text(STUDY.format(model=f"{USER_MODELS}:no_norm"))
    assert main(["study", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "run.model" in err and "no_norm" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/nowhere/cifar-10-python.tar.gz"], "no such file or folder"),
        (["--model", "resnet21"], "--model resnet21"),
        (["--model", "nowhere.py:make"], "file not found"),
    ],
)
def test_bad_data_or_model_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    code = main(["run", "--quick", *args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["run", "--quick", "--dry-run"], "give --data a dataset with 3 channels"),
        (["study", "SPEC"], "give [run] dataset a dataset with 3 channels"),
        (["doctor", "--batch-size", "2"], "give --data a dataset with 3 channels"),
        (["diagnose", "--batch-sizes", "2", "--epochs", "1"], "give --data a dataset"),
    ],
)
def test_a_model_that_does_not_fit_the_data_is_one_line(tmp_path, capsys, command, option):
    # A 3-channel factory on 1-channel data: PyTorch's conv error (a 21-frame traceback before).
    model = f"{USER_MODELS}:three_channels"
    if command[0] == "study":
        spec = tmp_path / "study.toml"
        spec.write_text(STUDY.format(model=model).replace("channels = 3", "channels = 1"))
        args = ["study", str(spec)]
    else:
        args = [*command, "--model", model]
    assert main([*args, "--out", str(tmp_path / "out")] if command[0] != "doctor" else args) == 2
    err = capsys.readouterr().err
    assert err.startswith("normlab: error:") and err.count("\n") == 1, err
    assert "expects 3 input channels" in err and ", 1 channel:" in err and option in err
    assert not (tmp_path / "out").exists()


NOTEBOOK = """
import sys
from torch import nn
import normlab
from normlab.data import register_dataset, synthetic
from normlab.models import ModelEntry, register_model
from normlab.study import run_study, spec_from_dict

if __name__ == "__main__":  # as in a notebook: nothing a spawned worker would re-run
    def my_data():
        return synthetic(num_examples=120, num_classes=3, channels=1, size=8)

    def my_model(*, num_classes, in_channels, norm, norm_options=None):
        return nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1),
            normlab.make_norm(norm, 4, **(norm_options or {})),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes),
        )

    register_dataset("mine", my_data, "1x8x8 registered in a notebook")
    register_model(ModelEntry("mine", my_model, "registered in a notebook", "1x8x8"))
    spec = spec_from_dict({
        "study": {"name": "notebook", "seeds": 2},
        "run": {"dataset": "mine", "model": "mine", "epochs": 1},
        "factors": {"norm": ["bn", "ln"], "batch_size": [8]},
        "lr": {"mode": "fixed", "base_lr": 0.05},
    })
    outcome = run_study(spec, sys.argv[1], workers=2, threads=1)
    print(outcome.planned, outcome.trained, outcome.failed)
"""


def test_python_registered_data_and_model_train_in_spawned_workers(tmp_path):
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["4", "4", "0"]
    with sqlite3.connect(tmp_path / "out" / "normlab.db") as db:
        statuses = [s for (s,) in db.execute("SELECT status FROM runs")]
    assert statuses == ["done"] * 4


def test_failed_runs_are_counted_and_exit_code_1(tmp_path, capsys):
    spec = tmp_path / "study.toml"
    spec.write_text(STUDY.format(model=f"{USER_MODELS}:fails_with_gn"))
    # In-process driver (main() is what the process exits with); the runs fail in pool workers.
    code = main(["study", str(spec), "--out", str(tmp_path / "out"), "--workers", "2"])
    result = capsys.readouterr()
    assert code == 1
    assert "1 of 2 runs failed" in result.err
    assert "RuntimeError: this model cannot train with GroupNorm" in result.err
    assert "1 runs trained" in result.out
    # The hint's command runs as printed.
    (command,) = re.findall(r"\((normlab export [^)]+)\)", result.err)
    assert main(shlex.split(command)[1:]) == 0
