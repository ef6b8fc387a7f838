"""Datasets from files on disk: the format of a path is detected, nothing is downloaded.

- CIFAR-10 / CIFAR-100 archives and extracted folders: :mod:`normlab.data.cifar`.
- Image folders: ``root/<class>/*.png|jpg|jpeg`` (one pool, split stratified), or
  ``root/train/<class>/...`` and ``root/test/<class>/...``. Decoded with Pillow; all images
  grey (one channel) if every one is grey, RGB otherwise. Option ``size``: resize each image to
  ``size x size`` (bilinear); without it, every image must have the same size.
- ``.npz`` arrays: ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test``; images
  (N, H, W) or NHWC or NCHW (the channel axis is the one of size 1, 3 or 4 where the other
  candidate is not; when both are, the layout whose image is square), uint8 or float; integer
  labels (floats with whole values are accepted). Loaded with ``allow_pickle=False``.

Every error names the file or folder at fault; nothing is written.
"""

from __future__ import annotations

import os
import tarfile
import zipfile

import numpy as np

from normlab.errors import NormlabError

from .cifar import find_cifar_folder, read_cifar_archive, read_cifar_folder
from .datasets import Dataset, Split, from_splits
from .fingerprint import file_records

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = (
    "CIFAR-10/100 python or CIFAR-10 binary archive (.tar.gz) or extracted folder, "
    "image folder (root/<class>/*.png|jpg), .npz arrays"
)


def looks_like_path(source: str) -> bool:
    """Whether ``source`` names a file or folder rather than a registered dataset."""
    return (
        os.path.exists(source)
        or os.sep in source
        or "/" in source
        or source.startswith(("~", "."))
        or source.lower().endswith((".npz", ".tar", ".gz", ".tgz"))
    )


def load_path(source: str, options: dict[str, object]) -> Dataset:
    """Load the dataset at ``source`` with the common options and the format's own.

    ``options`` holds ``val_fraction``, ``max_train_examples``, ``max_eval_examples`` (see
    :func:`from_splits`) and, for image folders, ``size``; any other key is an error.
    """
    path = os.path.abspath(os.path.expanduser(source))
    if not os.path.exists(path):
        raise NormlabError(f"{source}: no such file or folder")
    options = dict(options)
    size = options.pop("size", None)
    if os.path.isdir(path):
        folder = find_cifar_folder(path)
        if folder is not None:
            _refuse_size(source, size)
            arrays = read_cifar_folder(folder)
            return _cifar_dataset(source, arrays, options)
        train, test, files = read_image_folder(path, size)
        return from_splits(source, train, test, files=file_records(files), **options)
    _refuse_size(source, size)
    if zipfile.is_zipfile(path) and path.lower().endswith(".npz"):
        train, test = read_npz(path)
        return from_splits(source, train, test, files=file_records([path]), **options)
    if tarfile.is_tarfile(path) or path.lower().endswith((".tar", ".tar.gz", ".tgz")):
        arrays = read_cifar_archive(path)
        if arrays is None:
            raise NormlabError(f"{source}: a tar archive without a CIFAR layout; known: {FORMATS}")
        return _cifar_dataset(source, arrays, options)
    raise NormlabError(f"{source}: unknown data format; known: {FORMATS}")


def _cifar_dataset(source: str, arrays, options: dict[str, object]) -> Dataset:
    train, test = (arrays.x_train, arrays.y_train), (arrays.x_test, arrays.y_test)
    return from_splits(source, train, test, files=file_records(arrays.files), **options)


def _refuse_size(source: str, size: object) -> None:
    if size is not None:
        raise NormlabError(f"{source}: option 'size' applies to image folders only")


# -- image folders --------------------------------------------------------------------------


def read_image_folder(root: str, size: object = None) -> tuple[Split, Split | None, list[str]]:
    """(train, test or None, files read) of an image folder; labels index the sorted class names."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise NormlabError(f"{root}: option 'size' must be a positive integer, got {size!r}")
    train_root, test_root = os.path.join(root, "train"), os.path.join(root, "test")
    if os.path.isdir(train_root) and os.path.isdir(test_root):
        classes = _class_folders(train_root)
        test_classes = _class_folders(test_root)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise NormlabError(f"{test_root}: class folder {unknown[0]!r} has no train folder")
        train_paths = _image_paths(train_root, classes)
        test_paths = _image_paths(test_root, test_classes)
    else:
        classes = _class_folders(root)
        train_paths, test_paths = _image_paths(root, classes), []
    index = {name: label for label, name in enumerate(classes)}
    every = train_paths + test_paths
    images = _decode([path for path, _ in every], size)
    labels = np.array([index[name] for _, name in every], dtype=np.int64)
    cut = len(train_paths)
    train = (images[:cut], labels[:cut])
    test = (images[cut:], labels[cut:]) if test_paths else None
    return train, test, [path for path, _ in every]


def _class_folders(root: str) -> list[str]:
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise NormlabError(f"{root}: no class folders (expected root/<class>/*.png|jpg)")
    return classes


def _image_paths(root: str, classes: list[str]) -> list[tuple[str, str]]:
    """(path, class name) of every image, sorted; a class folder without images is an error."""
    paths = []
    for name in classes:
        folder = os.path.join(root, name)
        images = sorted(
            entry.path
            for entry in os.scandir(folder)
            if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)
        )
        if not images:
            raise NormlabError(f"{folder}: class folder with no .png/.jpg/.jpeg images")
        paths.extend((path, name) for path in images)
    return paths


def _decode(paths: list[str], size: int | None) -> np.ndarray:
    """uint8 (N, C, H, W): grey if every image is, RGB otherwise; resized when ``size`` is set."""
    # The first pass reads headers only (mode and size), so that size errors come before any
    # decoding and the channel count is known; the second decodes one image at a time.
    headers = [_read_image(path) for path in paths]
    mode = "L" if all(header_mode in ("L", "1", "I;16") for header_mode, _ in headers) else "RGB"
    first = headers[0][1]
    if size is None:
        for path, (_, image_size) in zip(paths, headers, strict=True):
            if image_size != first:
                raise NormlabError(
                    f"{path}: size {image_size[0]}x{image_size[1]} differs from "
                    f"{paths[0]} ({first[0]}x{first[1]}); pass the option size to resize"
                )
    images = np.stack([_read_image(path, mode, size) for path in paths])
    return images[:, None] if mode == "L" else images.transpose(0, 3, 1, 2)


def _read_image(path: str, mode: str | None = None, size: int | None = None):
    """Without ``mode``: the image's (mode, (width, height)); with it: its uint8 pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            if mode is None:
                return picture.mode, picture.size
            picture = picture.convert(mode)
            if size is not None:
                picture = picture.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(picture, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise NormlabError(f"{path}: not a readable image ({error})") from None


# -- .npz arrays ----------------------------------------------------------------------------


def read_npz(path: str) -> tuple[Split, Split | None]:
    """(train, test or None) of an .npz file, images as (N, C, H, W)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise NormlabError(f"{path}: not a readable .npz ({error})") from None
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise NormlabError(f"{path}: no array {key!r} (has {', '.join(sorted(arrays))})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise NormlabError(f"{path}: x_test and y_test go together; only one is present")
    train = _npz_split(path, "train", arrays)
    test = _npz_split(path, "test", arrays) if "x_test" in arrays else None
    if test is not None and test[0].shape[1:] != train[0].shape[1:]:
        raise NormlabError(
            f"{path}: x_test images are {test[0].shape[1:]}, x_train images {train[0].shape[1:]}"
        )
    return train, test


def _npz_split(path: str, split: str, arrays: dict[str, np.ndarray]) -> Split:
    images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if labels.ndim != 1 or len(labels) != len(images):
        raise NormlabError(
            f"{path}: x_{split} has {len(images)} examples but y_{split} has shape {labels.shape}"
        )
    if labels.dtype.kind not in "iu":
        whole = labels.dtype.kind == "f" and np.all(
            np.isfinite(labels) & (labels == np.round(labels))
        )
        if not whole:
            raise NormlabError(f"{path}: y_{split} labels are not integers (dtype {labels.dtype})")
        labels = labels.astype(np.int64)
    if images.dtype.kind not in "uif":
        raise NormlabError(f"{path}: x_{split} must be uint8 or float, got {images.dtype}")
    return _channels_first(path, split, images), labels


def _channels_first(path: str, split: str, images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:
        return images[:, None]
    if images.ndim != 4:
        raise NormlabError(f"{path}: x_{split} must be (N, H, W), NHWC or NCHW, got {images.shape}")
    channel_sizes = (1, 3, 4)
    first, last = images.shape[1] in channel_sizes, images.shape[3] in channel_sizes
    if first and not last:
        return images
    if last and not first:
        return images.transpose(0, 3, 1, 2)
    # Both could be channels (e.g. 4x4 grey images): square images decide, (N, 1, 4, 4) is NCHW.
    _, one, two, three = images.shape
    if first and last and two == three != one:
        return images
    if first and last and one == two != three:
        return images.transpose(0, 3, 1, 2)
    raise NormlabError(
        f"{path}: cannot tell the channel axis of x_{split} with shape {images.shape} "
        "(expected exactly one of axis 1 or 3 of size 1, 3 or 4)"
    )
