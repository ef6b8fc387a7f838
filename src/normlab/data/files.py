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

Every error names the file or folder at fault; nothing is written. Declared sizes are checked
before anything is allocated, against the file's real size and stated limits:

- ``.npz``: each member's ``.npy`` header (shape, dtype) must match the member's size, at most
  :data:`MAX_ARRAY_BYTES`, numeric; images at least :data:`MIN_IMAGE_SIDE` pixels a side; float
  pixels finite and within :data:`MAX_PIXEL_MAGNITUDE` (a NaN spreads through standardization).
- images: at most :data:`MAX_IMAGE_PIXELS` each, decoded size at most
  :data:`MAX_DECODE_RATIO` times the file's (a flat 4000 x 4000 PNG is 16 KB), all of them at
  most :data:`MAX_IMAGES_BYTES`; 16-bit images are refused (converting them to 8 bits clips).
- tar archives: :mod:`normlab.data.archive`.

Symbolic links are followed, inside or out of the data folder: a folder of links to images kept
elsewhere is a common way to make a split, and normlab only reads them. The fingerprint records
each file under the path it was found at, hashing the content it points to.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from normlab.errors import NormlabError

from .archive import archive_kind
from .cifar import find_cifar_folder, read_cifar_archive, read_cifar_folder
from .datasets import Dataset, Split, from_splits
from .fingerprint import file_records

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_ARRAY_BYTES = 4 << 30
"""Largest array of an .npz (CIFAR-10 as float32 NHWC is 737 MB)."""
MIN_IMAGE_SIDE = 2
"""Smallest image height and width (1 x 1 images leave nothing for a convolution to see)."""
MAX_PIXEL_MAGNITUDE = 1e6
"""Largest absolute float pixel: beyond it the values are not pixels, and their squares lose
precision or overflow in float32 standardization."""
MAX_IMAGE_PIXELS = 64_000_000
"""Largest image (width x height) decoded; Pillow's own bomb check stops at 179 million."""
MAX_DECODE_RATIO = 200
"""Largest ratio of an image's decoded bytes to its file's size, for images over 1 MiB decoded:
photographs compress 2-20 times, a crafted flat PNG 1000 times."""
MAX_IMAGES_BYTES = 2 << 30
"""Largest total of decoded 8-bit pixels of an image folder (after resizing)."""
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
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
    try:
        return _load_path(source, path, dict(options))
    except MemoryError:  # a limit above was not enough for this machine: still one line
        raise NormlabError(f"{source}: not enough memory to load it") from None


def _load_path(source: str, path: str, options: dict[str, object]) -> Dataset:
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
    if archive_kind(path) or path.lower().endswith((".tar", ".tar.gz", ".tgz")):
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
    mode = "L" if all(header_mode in ("L", "1") for header_mode, _ in headers) else "RGB"
    channels = 1 if mode == "L" else 3
    total = 0
    for path, (header_mode, (width, height)) in zip(paths, headers, strict=True):
        _check_image(path, header_mode, width, height, channels)
        total += (size * size if size else width * height) * channels
    if total > MAX_IMAGES_BYTES:
        raise NormlabError(
            f"{os.path.dirname(os.path.dirname(paths[0]))}: {total:,} bytes of pixels, more than "
            f"{MAX_IMAGES_BYTES:,}; pass the option size to resize"
        )
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


def _check_image(path: str, mode: str, width: int, height: int, channels: int) -> None:
    """Refuse, from its header, an image that would decode wrong or too large."""
    if mode in SIXTEEN_BIT_MODES:
        raise NormlabError(
            f"{path}: {mode} image (more than 8 bits a value); normlab reads 8-bit images, "
            "converting would clip: save it as 8-bit"
        )
    pixels = width * height
    if pixels > MAX_IMAGE_PIXELS:
        raise NormlabError(f"{path}: {width}x{height} pixels, more than {MAX_IMAGE_PIXELS:,}")
    decoded = pixels * channels
    if decoded > 1 << 20 and decoded > MAX_DECODE_RATIO * os.path.getsize(path):
        raise NormlabError(
            f"{path}: {width}x{height} pixels from {os.path.getsize(path):,} bytes (a "
            f"decompression bomb?); refusing images over {MAX_DECODE_RATIO} times their file"
        )


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
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise NormlabError(f"{path}: not a readable image ({error})") from None


# -- .npz arrays ----------------------------------------------------------------------------


def read_npz(path: str) -> tuple[Split, Split | None]:
    """(train, test or None) of an .npz file, images as (N, C, H, W)."""
    _check_npy_headers(path)
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


def _check_npy_headers(path: str) -> None:
    """Each member's declared shape and dtype against its real size and the limits, read from
    the ``.npy`` headers before any array is allocated."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    shape, dtype, header = _npy_header(member)
                name = info.filename.removesuffix(".npy")
                if dtype.hasobject:  # np.load refuses it too (allow_pickle=False): say why
                    raise NormlabError(f"{path}: array {name!r} holds Python objects")
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                real = info.file_size - header
                if declared > MAX_ARRAY_BYTES or declared != real:
                    raise NormlabError(
                        f"{path}: array {name!r} declares shape {shape} ({declared:,} bytes) but "
                        f"holds {real:,} bytes (limit {MAX_ARRAY_BYTES:,})"
                    )
    except NormlabError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise NormlabError(f"{path}: not a readable .npz ({error})") from None


def _npy_header(member) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length in bytes) of an ``.npy`` stream at its start."""
    fmt = np.lib.format
    version = fmt.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(member)
    else:  # version 3 (utf-8 field names) has no public reader
        shape, _, dtype = fmt._read_array_header(member, version)
    return shape, dtype, member.tell()


def _npz_split(path: str, split: str, arrays: dict[str, np.ndarray]) -> Split:
    images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if images.ndim not in (3, 4):
        raise NormlabError(f"{path}: x_{split} must be (N, H, W), NHWC or NCHW, got {images.shape}")
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
    if images.dtype.kind == "f" and not np.all(np.abs(images) <= MAX_PIXEL_MAGNITUDE):
        # NaN compares false: one NaN pixel becomes a third of the values after standardization.
        bad = images[~(np.abs(images) <= MAX_PIXEL_MAGNITUDE)].flat[0]
        raise NormlabError(
            f"{path}: x_{split} holds the value {bad} (pixels must be finite, within "
            f"+-{MAX_PIXEL_MAGNITUDE:g})"
        )
    images = _channels_first(path, split, images)
    if min(images.shape[2:]) < MIN_IMAGE_SIDE:
        raise NormlabError(
            f"{path}: x_{split} images are {images.shape[2]}x{images.shape[3]}, smaller than "
            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}"
        )
    return images, labels


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
