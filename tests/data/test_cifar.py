"""CIFAR archives and folders as distributed: load, split, standardize, refuse bad or hostile files."""

import io
import os
import tarfile

import numpy as np
import pytest
import torch
from cifar_files import (
    LAYOUT_FOLDERS,
    cifar_arrays,
    member_files,
    python2_pickle,
    write_archive,
    write_folder,
)

from normlab.data import data_fingerprint, load_dataset
from normlab.errors import NormlabError

ARCHIVE_NAMES = {
    "python10": "cifar-10-python.tar.gz",
    "python100": "cifar-100-python.tar.gz",
    "binary": "cifar-10-binary.tar.gz",
}


@pytest.mark.parametrize("layout", ["python10", "python100", "binary"])
@pytest.mark.parametrize("packed", ["archive", "folder"])
def test_cifar_layouts_load_with_test_split_and_carved_val(tmp_path, layout, packed):
    members = member_files(layout, per_batch=20)
    if packed == "archive":
        path = write_archive(str(tmp_path / ARCHIVE_NAMES[layout]), members, LAYOUT_FOLDERS[layout])
    else:
        path = write_folder(str(tmp_path), members, LAYOUT_FOLDERS[layout])
    data = load_dataset(path)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    # 100 training images, 10 per class; val_fraction 0.1 carves 1 per class; test is its own.
    assert data.sizes() == {"train": 90, "val": 10, "test": 20}
    assert torch.bincount(data.y_val, minlength=10).tolist() == [1] * 10
    assert data.x_train.dtype == torch.float32
    expected_files = 1 if packed == "archive" else 6 if layout != "python100" else 2
    assert len(data.files) == expected_files and data_fingerprint(data)


def test_cifar_pixels_are_channel_major_and_standardized_per_channel(tmp_path):
    members = member_files("python10", per_batch=20)
    path = write_folder(str(tmp_path), members, LAYOUT_FOLDERS["python10"])
    data = load_dataset(path, val_fraction=0.5)
    assert data.sizes() == {"train": 50, "val": 50, "test": 20}
    # Per channel, train is mean 0 and std 1 (float32 rounding of a float64 computation).
    train = data.x_train.double()
    assert train.mean(dim=(0, 2, 3)).abs().max() < 1e-6
    assert (train.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-5
    # Test keeps the file's order: its first image is row 0 of test_batch read channel-major
    # (1024 red, then green, then blue values), shifted and scaled per channel.
    raw = cifar_arrays(20, 10, seed=5)[0][0].reshape(3, 32, 32).astype(np.float64)
    restored = data.x_test[0].double().numpy()
    for channel in range(3):
        slope, _ = np.polyfit(raw[channel].ravel(), restored[channel].ravel(), 1)
        residual = restored[channel] - slope * raw[channel]
        assert slope > 0 and np.ptp(residual) < 1e-5  # an exact affine map, float32 rounding


def test_max_train_examples_is_class_balanced_and_fixed(tmp_path):
    path = write_archive(
        str(tmp_path / "c.tar.gz"), member_files("binary", per_batch=20), "cifar-10-batches-bin"
    )
    first = load_dataset(path, max_train_examples=30, max_eval_examples=10)
    second = load_dataset(path, max_train_examples=30, max_eval_examples=10)
    assert first.sizes() == {"train": 30, "val": 10, "test": 10}
    assert torch.bincount(first.y_train, minlength=10).tolist() == [3] * 10
    assert torch.equal(first.x_train, second.x_train)


def _malicious_archive(tmp_path, marker):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    members = member_files("python10")
    members["data_batch_1"] = python2_pickle({b"data": Payload()})
    return write_archive(str(tmp_path / "cifar-10-python.tar.gz"), members, "cifar-10-batches-py")


def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = _malicious_archive(tmp_path, marker)
    with pytest.raises(NormlabError, match=r"refusing to unpickle (posix|os|nt)\.system") as error:
        load_dataset(path)
    assert path in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()


def test_a_folder_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    members = member_files("python10")
    members["test_batch"] = python2_pickle([print, b"x"])
    folder = write_folder(str(tmp_path), members, "cifar-10-batches-py")
    with pytest.raises(NormlabError, match="test_batch: refusing to unpickle builtins.print"):
        load_dataset(folder)
    assert not marker.exists()


def test_truncated_archive_is_refused_naming_it(tmp_path):
    path = write_archive(
        str(tmp_path / "cifar-10-python.tar.gz"), member_files("python10"), "cifar-10-batches-py"
    )
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    with pytest.raises(NormlabError, match="truncated") as error:
        load_dataset(path)
    assert path in str(error.value)


def test_tar_without_cifar_layout_and_incomplete_archive_are_refused(tmp_path):
    other = write_archive(str(tmp_path / "other.tar.gz"), {"notes.txt": b"hello"}, "stuff")
    with pytest.raises(NormlabError, match="other.tar.gz: a tar archive without a CIFAR layout"):
        load_dataset(other)
    members = member_files("python10")
    del members["data_batch_3"]
    incomplete = write_archive(str(tmp_path / "c.tar.gz"), members, "cifar-10-batches-py")
    with pytest.raises(NormlabError, match="c.tar.gz: truncated or incomplete .*data_batch_3"):
        load_dataset(incomplete)


def test_binary_batch_of_partial_records_is_refused(tmp_path):
    members = member_files("binary")
    members["test_batch.bin"] = members["test_batch.bin"][:-5]
    folder = write_folder(str(tmp_path), members, "cifar-10-batches-bin")
    with pytest.raises(NormlabError, match=r"test_batch.bin: \d+ bytes is not a whole number"):
        load_dataset(folder)


def test_python_batch_with_non_integer_labels_is_refused(tmp_path):
    members = member_files("python10")
    data, _ = cifar_arrays(10, 10, 0)
    members["data_batch_2"] = python2_pickle({b"data": data, b"labels": [0.5] * 10})
    folder = write_folder(str(tmp_path), members, "cifar-10-batches-py")
    with pytest.raises(NormlabError, match="data_batch_2: labels are not integers"):
        load_dataset(folder)


def test_python_batch_that_is_not_a_pickle_is_refused(tmp_path):
    members = member_files("python10")
    members["data_batch_4"] = b"\x00garbage"
    with tarfile.open(tmp_path / "c.tar.gz", "w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    with pytest.raises(NormlabError, match=r"member data_batch_4\): not a CIFAR python batch"):
        load_dataset(str(tmp_path / "c.tar.gz"))
