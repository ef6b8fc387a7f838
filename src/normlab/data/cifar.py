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
else (e.g. ``os.system``) before it is called. Archives are streamed member by member; nothing
is written to disk.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from normlab.errors import NormlabError

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

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(text, "latin1"): a pure data
    # transform (torch's weights_only unpickler allows it too), needed for re-pickled batches.
    ("_codecs", "encode"): codecs.encode,
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
        with open(path, "rb") as handle:
            members[name] = handle.read()
    files = tuple(os.path.join(folder, name) for name in layout["train"] + layout["test"])
    return _assemble(folder, layout, members, files, source_of=lambda n: os.path.join(folder, n))


def read_cifar_archive(path: str) -> CifarArrays | None:
    """Read a CIFAR tar archive in one streaming pass; ``None`` if it holds no CIFAR layout.

    A truncated or corrupt archive is an error naming it.
    """
    found: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(path, "r|*") as archive:
            for member in archive:
                folder, name = os.path.split(os.path.normpath(member.name))
                layout = LAYOUTS.get(os.path.basename(folder))
                if not member.isfile() or layout is None:
                    continue
                if name in layout["train"] + layout["test"]:
                    handle = archive.extractfile(member)
                    found.setdefault(os.path.basename(folder), {})[name] = handle.read()  # type: ignore[union-attr]
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise NormlabError(f"{path}: truncated or corrupt archive ({error})") from None
    if not found:
        return None
    folder_name, members = next(iter(found.items()))
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
    parse = _parse_binary if layout["test"][0].endswith(".bin") else _parse_python
    splits = []
    for split in ("train", "test"):
        parts = [parse(members.pop(name), source_of(name)) for name in layout[split]]
        images = np.concatenate([images for images, _ in parts])
        labels = np.concatenate([labels for _, labels in parts])
        splits.append((images.reshape(-1, 3, 32, 32), labels))
    (x_train, y_train), (x_test, y_test) = splits
    return CifarArrays(x_train, y_train, x_test, y_test, files)


def _parse_python(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = RestrictedUnpickler(io.BytesIO(data), source).load()
    except NormlabError:
        raise
    except Exception as error:  # a corrupt pickle can raise nearly anything while loading
        raise NormlabError(f"{source}: not a CIFAR python batch ({type(error).__name__})") from None
    if not isinstance(batch, dict):
        raise NormlabError(f"{source}: not a CIFAR python batch (a {type(batch).__name__})")
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    images = batch.get("data")
    labels = batch.get("labels", batch.get("fine_labels"))
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2:
        raise NormlabError(f"{source}: 'data' must be an N x {PIXELS} uint8 array")
    if images.shape[1] != PIXELS:
        raise NormlabError(f"{source}: 'data' rows have {images.shape[1]} values, not {PIXELS}")
    if labels is None:
        raise NormlabError(f"{source}: no 'labels' or 'fine_labels'")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise NormlabError(f"{source}: labels are not integers (dtype {labels.dtype})")
    if len(labels) != len(images):
        raise NormlabError(f"{source}: {len(images)} images but {len(labels)} labels")
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
