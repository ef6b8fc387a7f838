"""CIFAR-10 and CIFAR-100 exactly as distributed (Krizhevsky, 2009), read without extracting.

Layouts (archive members, or files of the extracted folder):

- python, CIFAR-10: ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5`` and ``test_batch``;
  CIFAR-100: ``cifar-100-python/train`` and ``test``. Each is a dict pickled with protocol 2 by
  Python 2: ``b"data"`` (N x 3072 uint8, channel-major: 1024 red, 1024 green, 1024 blue values,
  rows top to bottom) and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100).
- binary, CIFAR-10: ``cifar-10-batches-bin/data_batch_1.bin`` .. ``data_batch_5.bin`` and
  ``test_batch.bin``: records of 1 label byte followed by the same 3072 pixel bytes.

Security: pickle runs whatever callables a file names. :class:`RestrictedUnpickler` resolves only
the NumPy array reconstruction and built-in containers the format needs and refuses anything
else (e.g. ``os.system``) before it is called. The callables it allows are narrowed to what NumPy
and Python write: ``_reconstruct`` only of an empty array (NumPy's pickles fill it from the
state, whose size NumPy checks against the shape; a declared shape would allocate before any
check, and without a state its bytes would be uninitialized memory), ``_codecs.encode`` only to
latin-1 (other codecs, e.g. punycode, are quadratic). Labels must be a flat list of integers (or
a 1-d integer array) within the layout's classes. Archives are streamed member by member through
:mod:`normlab.data.archive` (bounded headers and sizes, CRC checked at the end); every member
must lie under one CIFAR folder; nothing is written to disk. A folder's files are read as they
are, symbolic links followed (see :mod:`normlab.data.files`).
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from normlab.errors import NormlabError

from .archive import MAX_MEMBER_BYTES, tar_members

try:  # NumPy 2 moved the array internals to numpy._core; CIFAR's pickles name numpy.core.
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

PIXELS = 3 * 32 * 32
TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))

LAYOUTS: dict[str, dict[str, tuple[str, ...]]] = {
    # folder name -> {"train": member names, "test": member names}
    "cifar-10-batches-py": {"train": TRAIN_BATCHES, "test": ("test_batch",)},
    "cifar-100-python": {"train": ("train",), "test": ("test",)},
    "cifar-10-batches-bin": {
        "train": tuple(f"{name}.bin" for name in TRAIN_BATCHES),
        "test": ("test_batch.bin",),
    },
}
"""The three distributed layouts, named by the folder their archive unpacks to."""
NUM_CLASSES = {"cifar-10-batches-py": 10, "cifar-100-python": 100, "cifar-10-batches-bin": 10}
LATIN_1 = ("latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1")


def _empty_array(kind: type, shape: tuple[int, ...], typecode: bytes) -> np.ndarray:
    """``_reconstruct`` as NumPy's pickles call it: an empty array that the state then fills."""
    if kind is not np.ndarray or tuple(shape) != (0,):
        raise NormlabError(
            f"refusing numpy _reconstruct of {getattr(kind, '__name__', kind)} with shape "
            f"{shape!r}: NumPy pickles an empty array and its contents"
        )
    return _reconstruct(np.ndarray, (0,), typecode)


def _latin_1(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2: latin-1 only."""
    if not isinstance(text, str) or str(encoding).lower() not in LATIN_1:
        raise NormlabError(f"refusing _codecs.encode to {encoding!r}: only latin-1 is CIFAR data")
    return text.encode("latin-1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(text, "latin1"), needed for
    # re-pickled batches; only that codec (torch's weights_only unpickler narrows it too).
    ("_codecs", "encode"): _latin_1,
    **{
        ("builtins", kind.__name__): kind
        for kind in (dict, list, tuple, set, frozenset, bytes, bytearray, str, int, float)
    },
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only NumPy array reconstruction and built-in containers.

    Python 2's ``__builtin__`` is mapped to ``builtins`` by ``fix_imports`` before
    :meth:`find_class` sees it. ``source`` is named in the refusal.
    """

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        raise NormlabError(
            f"{self.source}: refusing to unpickle {module}.{name}: not part of the CIFAR format"
        )


@dataclass(frozen=True)
class CifarArrays:
    """uint8 images (N, 3, 32, 32) and int64 labels of both splits, and the files read."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    files: tuple[str, ...]


def find_cifar_folder(path: str) -> str | None:
    """The extracted CIFAR folder at or directly under ``path``, if there is one."""
    candidates = [path] + [os.path.join(path, folder) for folder in LAYOUTS]
    for folder in candidates:
        layout = LAYOUTS.get(os.path.basename(os.path.normpath(folder)))
        if layout and os.path.isfile(os.path.join(folder, layout["test"][0])):
            return folder
    return None


def read_cifar_folder(folder: str) -> CifarArrays:
    """Read an extracted CIFAR folder (one of :data:`LAYOUTS`); a missing batch is an error."""
    layout = LAYOUTS[os.path.basename(os.path.normpath(folder))]
    members: dict[str, bytes] = {}
    for name in layout["train"] + layout["test"]:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise NormlabError(f"{path}: missing (a {os.path.basename(folder)} folder needs it)")
        if os.path.getsize(path) > MAX_MEMBER_BYTES:
            raise NormlabError(f"{path}: larger than any CIFAR batch ({MAX_MEMBER_BYTES:,} bytes)")
        with open(path, "rb") as handle:
            members[name] = handle.read()
    files = tuple(os.path.join(folder, name) for name in layout["train"] + layout["test"])
    return _assemble(folder, layout, members, files, source_of=lambda n: os.path.join(folder, n))


def read_cifar_archive(path: str) -> CifarArrays | None:
    """Read a CIFAR tar archive in one streaming pass; ``None`` if it holds no CIFAR layout.

    A truncated or corrupt archive is an error naming it, and so is one whose batches lie under
    more than one folder (they would be merged) or repeat a member.
    """
    found: dict[str, dict[str, bytes]] = {}
    with tar_members(path) as members_of:
        for member, handle in members_of:
            folder, name = os.path.split(os.path.normpath(member.name))
            layout = LAYOUTS.get(os.path.basename(folder))
            if layout is None or name not in layout["train"] + layout["test"]:
                continue
            if found and folder not in found:
                other = next(iter(found))
                raise NormlabError(
                    f"{path}: CIFAR batches under two folders ({other}/ and {folder}/); "
                    "keep one in the archive"
                )
            if name in found.get(folder, {}):
                raise NormlabError(f"{path}: member {folder}/{name} appears twice")
            found.setdefault(folder, {})[name] = handle.read()
    if not found:
        return None
    folder_path, members = next(iter(found.items()))
    folder_name = os.path.basename(folder_path)
    layout = LAYOUTS[folder_name]
    for name in layout["train"] + layout["test"]:
        if name not in members:
            raise NormlabError(
                f"{path}: truncated or incomplete CIFAR archive, no {folder_name}/{name}"
            )
    return _assemble(
        path, layout, members, (path,), source_of=lambda name: f"{path} (member {name})"
    )


def _assemble(
    where: str,
    layout: dict[str, tuple[str, ...]],
    members: dict[str, bytes],
    files: tuple[str, ...],
    source_of: Callable[[str], str],
) -> CifarArrays:
    binary = layout["test"][0].endswith(".bin")
    classes = 100 if layout["train"] == ("train",) else 10  # CIFAR-100 python, else CIFAR-10
    splits = []
    for split in ("train", "test"):
        parts = [
            _parse_binary(members.pop(name), source_of(name))
            if binary
            else _parse_python(members.pop(name), source_of(name), classes)
            for name in layout[split]
        ]
        images = np.concatenate([images for images, _ in parts])
        labels = np.concatenate([labels for _, labels in parts])
        splits.append((images.reshape(-1, 3, 32, 32), labels))
    (x_train, y_train), (x_test, y_test) = splits
    return CifarArrays(x_train, y_train, x_test, y_test, files)


def _parse_python(data: bytes, source: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = RestrictedUnpickler(io.BytesIO(data), source).load()
    except NormlabError as error:
        raise NormlabError(f"{source}: {error}") from None
    except MemoryError:
        raise NormlabError(f"{source}: not enough memory to unpickle it") from None
    except Exception as error:  # a corrupt pickle can raise nearly anything while loading
        raise NormlabError(f"{source}: not a CIFAR python batch ({type(error).__name__})") from None
    if not isinstance(batch, dict):
        raise NormlabError(f"{source}: not a CIFAR python batch (a {type(batch).__name__})")
    if not all(isinstance(key, (bytes, str)) and key.isascii() for key in batch):
        odd = next(k for k in batch if not (isinstance(k, (bytes, str)) and k.isascii()))
        raise NormlabError(f"{source}: not a CIFAR python batch (key {odd!r} is not ASCII text)")
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    images = batch.get("data")
    labels = batch.get("labels", batch.get("fine_labels"))
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2:
        raise NormlabError(f"{source}: 'data' must be an N x {PIXELS} uint8 array")
    if images.shape[1] != PIXELS:
        raise NormlabError(f"{source}: 'data' rows have {images.shape[1]} values, not {PIXELS}")
    if labels is None:
        raise NormlabError(f"{source}: no 'labels' or 'fine_labels'")
    # Checked before NumPy sees them: nested lists sharing one object at every level are a few
    # bytes in the pickle and 2**depth elements in an array.
    if isinstance(labels, (list, tuple)):
        if not all(type(label) is int for label in labels):
            raise NormlabError(f"{source}: labels are not integers (expected a flat list of them)")
        labels = np.array(labels, dtype=np.int64) if labels else np.zeros(0, np.int64)
    elif not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise NormlabError(f"{source}: labels are not integers (expected a flat list of them)")
    if len(labels) != len(images):
        raise NormlabError(f"{source}: {len(images)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise NormlabError(f"{source}: label {bad} outside 0..{classes - 1}")
    return images, labels.astype(np.int64)


def _parse_binary(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    record = 1 + PIXELS
    if len(data) == 0 or len(data) % record:
        raise NormlabError(
            f"{source}: {len(data)} bytes is not a whole number of {record}-byte CIFAR records "
            "(truncated?)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise NormlabError(f"{source}: label {labels.max()} outside 0..9 (not CIFAR-10 binary)")
    return records[:, 1:], labels
