"""Small CIFAR-format files written as the real ones are, for the data tests.

The real python batches were pickled by Python 2 with protocol 2: byte strings are ``str``
opcodes (``BINSTRING``) and NumPy is named ``numpy.core.multiarray``. :class:`Python2Pickler`
writes the same bytes from Python 3, so the tests read what users have on disk.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile

import numpy as np

LAYOUT_FOLDERS = {
    "python10": "cifar-10-batches-py",
    "python100": "cifar-100-python",
    "binary": "cifar-10-batches-bin",
}


class Python2Pickler(pickle._Pickler):  # the pure-Python pickler lets us replace opcodes
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def python2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def cifar_arrays(count: int, num_classes: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """``count`` rows of 3072 uint8 pixels whose channel means depend on the class, and labels."""
    rng = np.random.default_rng(seed)
    labels = [int(label) for label in rng.permutation(np.arange(count) % num_classes)]
    data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
    return data, labels


def member_files(layout: str, per_batch: int = 10, num_classes: int = 10) -> dict[str, bytes]:
    """File name -> content of every member of a small CIFAR ``layout``."""
    if layout == "python100":
        files = {}
        for name, count, seed in (("train", 5 * per_batch, 0), ("test", per_batch, 1)):
            data, labels = cifar_arrays(count, num_classes, seed)
            files[name] = python2_pickle(
                {b"data": data, b"fine_labels": labels, b"coarse_labels": labels}
            )
        return files
    names = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
    files = {}
    for seed, name in enumerate(names):
        data, labels = cifar_arrays(per_batch, num_classes, seed)
        if layout == "python10":
            files[name] = python2_pickle({b"batch_label": b"x", b"labels": labels, b"data": data})
        else:
            records = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)
            files[f"{name}.bin"] = records.tobytes()
    return files


def write_archive(path: str, members: dict[str, bytes], folder: str) -> str:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def write_folder(root: str, members: dict[str, bytes], folder: str) -> str:
    path = os.path.join(root, folder)
    os.makedirs(path)
    for name, content in members.items():
        with open(os.path.join(path, name), "wb") as handle:
            handle.write(content)
    return path
