"""Image folders and .npz arrays: format detection, splits, standardization and one-line errors."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from normlab.data import load_dataset
from normlab.errors import NormlabError


def write_images(root, classes=("cat", "dog", "owl"), per_class=10, size=(6, 6), mode="RGB"):
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        os.makedirs(root / name, exist_ok=True)
        for index in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8) // 2 + 40 * label
            Image.fromarray(pixels, mode).save(root / name / f"{index}.png")


def test_image_folder_is_split_and_standardized_per_channel(tmp_path):
    write_images(tmp_path, per_class=10)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")  # ignored
    data = load_dataset(str(tmp_path))
    assert data.input_shape == (3, 6, 6) and data.num_classes == 3
    # No test split of its own: 70 / 10 / 20 of each class.
    assert data.sizes() == {"train": 21, "val": 3, "test": 6}
    assert (data.x_train.double().mean(dim=(0, 2, 3)).abs() < 1e-6).all()
    assert len(data.files) == 30 and all(path.endswith(".png") for path, _, _ in data.files)


def test_image_folder_with_train_and_test_and_grey_images_resized(tmp_path):
    write_images(tmp_path / "train", per_class=10, size=(5, 7), mode="L")
    write_images(tmp_path / "test", classes=("cat", "owl"), per_class=2, size=(9, 4), mode="L")
    data = load_dataset(str(tmp_path), size=8, val_fraction=0.2)
    assert data.input_shape == (1, 8, 8)
    assert data.sizes() == {"train": 24, "val": 6, "test": 4}
    # Test classes map to the train folders' indices (cat 0, owl 2).
    assert sorted(set(data.y_test.tolist())) == [0, 2]


def test_mixed_sizes_without_size_name_the_file(tmp_path):
    write_images(tmp_path, per_class=3)
    Image.new("RGB", (7, 6)).save(tmp_path / "dog" / "odd.png")
    with pytest.raises(
        NormlabError, match=r"odd.png: size 7x6 differs from .*pass the option size"
    ):
        load_dataset(str(tmp_path))


def test_class_folder_without_images_is_refused(tmp_path):
    write_images(tmp_path, per_class=3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NormlabError, match="empty: class folder with no .png"):
        load_dataset(str(tmp_path))


def test_unreadable_image_is_refused(tmp_path):
    write_images(tmp_path, per_class=3)
    (tmp_path / "owl" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(NormlabError, match="broken.jpg: not a readable image"):
        load_dataset(str(tmp_path))


def test_npz_nhwc_uint8_with_test_split(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, size=(40, 5, 5, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(8, 5, 5, 3), dtype=np.uint8)
    y_train, y_test = np.arange(40) % 4 + 10, np.arange(8) % 4 + 10  # labels need not be 0..K-1
    np.savez(tmp_path / "a.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = load_dataset(str(tmp_path / "a.npz"), val_fraction=0.2)
    assert data.input_shape == (3, 5, 5) and data.num_classes == 4
    assert data.sizes() == {"train": 32, "val": 8, "test": 8}
    assert data.y_test.tolist() == (np.arange(8) % 4).tolist()
    # NHWC was moved to NCHW: the first test image's red plane is x_test[0, :, :, 0], affinely.
    red = x_test[0, :, :, 0].astype(np.float64).ravel()
    assert np.corrcoef(red, data.x_test[0, 0].double().numpy().ravel())[0, 1] > 0.99999


def test_npz_nchw_float_without_test_split(tmp_path):
    x = np.random.default_rng(2).standard_normal((50, 1, 4, 4)) * 3 + 7
    np.savez(tmp_path / "b.npz", x_train=x, y_train=np.arange(50) % 5)
    data = load_dataset(str(tmp_path / "b.npz"))
    assert data.input_shape == (1, 4, 4) and data.x_train.dtype == torch.float32
    assert data.sizes() == {"train": 35, "val": 5, "test": 10}
    assert abs(float(data.x_train.double().std(unbiased=False)) - 1) < 1e-5


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"x_train": np.zeros((4, 3, 2, 2)), "y_train": np.zeros(3, int)},
            "x_train has 4 examples but y_train",
        ),
        (
            {"x_train": np.zeros((4, 3, 2, 2)), "y_train": np.array([0, 1, 0.5, 1])},
            "y_train labels are not integers",
        ),
        (
            {"x_train": np.zeros((4, 3, 2, 2)), "y_train": np.array(["a", "b", "a", "b"])},
            "y_train labels are not integers",
        ),
        (
            {"x_train": np.zeros((4, 3, 3, 3)), "y_train": np.zeros(4, int)},
            "cannot tell the channel axis",
        ),
        ({"x_train": np.zeros((4, 3, 2, 2))}, "no array 'y_train'"),
        (
            {
                "x_train": np.zeros((4, 3, 2, 2)),
                "y_train": np.zeros(4, int),
                "x_test": np.zeros((1, 3, 2, 2)),
            },
            "x_test and y_test go together",
        ),
    ],
)
def test_bad_npz_is_refused_naming_the_file(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(NormlabError, match=message) as error:
        load_dataset(str(tmp_path / "bad.npz"))
    assert "bad.npz" in str(error.value) and "\n" not in str(error.value)


def test_missing_path_unknown_format_and_unknown_option(tmp_path):
    with pytest.raises(NormlabError, match="nowhere/cifar.tar.gz: no such file or folder"):
        load_dataset(str(tmp_path / "nowhere" / "cifar.tar.gz"))
    (tmp_path / "data.csv").write_text("1,2,3\n")
    with pytest.raises(NormlabError, match="data.csv: unknown data format"):
        load_dataset(str(tmp_path / "data.csv"))
    np.savez(tmp_path / "c.npz", x_train=np.zeros((4, 1, 2, 2)), y_train=np.arange(4) % 2)
    with pytest.raises(NormlabError, match="unknown option 'resize'"):
        load_dataset(str(tmp_path / "c.npz"), resize=3)
    with pytest.raises(NormlabError, match="'size' applies to image folders only"):
        load_dataset(str(tmp_path / "c.npz"), size=3)
    with pytest.raises(NormlabError, match="val_fraction must be in"):
        load_dataset(str(tmp_path / "c.npz"), val_fraction=0.9)
