"""Small hostile data files, generated (nothing large is kept in the repository): each is a few
hundred bytes to a few hundred kilobytes that, read naively, hangs, exhausts memory, loads wrong
data silently or raises a raw traceback. ``HOSTILE`` maps a name to a writer ``(folder) -> path
to pass to --data``; ``tests/data/test_hostile.py`` runs each under a time and memory bound."""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from cifar_files import member_files, python2_pickle, write_folder

PY10 = "cifar-10-batches-py"
EXAMPLES = 20
"""Examples per batch or class: enough that a wrongly read file loads (its splits not empty)."""


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _unicode(text: str) -> bytes:
    data = text.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _batch_folder(folder: Path, first_batch: bytes) -> str:
    """A CIFAR-10 python folder whose data_batch_1 (parsed first) is ``first_batch``."""
    members = member_files("python10", per_batch=EXAMPLES)
    members["data_batch_1"] = first_batch
    return write_folder(str(folder), members, PY10)


def punycode_pickle(folder: Path) -> str:
    """``_codecs.encode(<60,000 CJK characters>, 'punycode')``: quadratic, minutes."""
    text = "".join(chr(0x4E00 + index % 20_000) for index in range(60_000))
    body = _global("_codecs", "encode") + _unicode(text) + _unicode("punycode")
    return _batch_folder(folder, b"\x80\x02" + body + pickle.TUPLE2 + pickle.REDUCE + b".")


def _reconstruct_call(shape: tuple[int, ...]) -> bytes:
    """``numpy.core.multiarray._reconstruct(numpy.ndarray, shape, b'B')`` without a state."""
    shape_ops = b"".join(pickle.BININT + struct.pack("<i", n) for n in shape)
    return (
        _global("numpy.core.multiarray", "_reconstruct")
        + _global("numpy", "ndarray")
        + pickle.MARK
        + shape_ops
        + pickle.TUPLE
        + pickle.SHORT_BINBYTES
        + b"\x01B"
        + pickle.TUPLE3
        + pickle.REDUCE
    )


def _dict_batch(data_ops: bytes, labels_ops: bytes) -> bytes:
    return (
        b"\x80\x02"
        + pickle.EMPTY_DICT
        + pickle.SHORT_BINBYTES
        + b"\x04data"
        + data_ops
        + pickle.SETITEM
        + pickle.SHORT_BINBYTES
        + b"\x06labels"
        + labels_ops
        + pickle.SETITEM
        + b"."
    )


def _labels(count: int) -> bytes:
    return (
        pickle.MARK + b"".join(pickle.BININT1 + bytes([i % 10]) for i in range(count)) + pickle.LIST
    )


def huge_reconstruct(folder: Path) -> str:
    """A ~300-byte batch asking ``_reconstruct`` for a (500000, 3072) uint8 array (1.4 GiB)."""
    return _batch_folder(folder, _dict_batch(_reconstruct_call((500_000, 3072)), _labels(20)))


def stateless_reconstruct(folder: Path) -> str:
    """``_reconstruct`` of 20 x 3072 with no state: uninitialized heap bytes as pixels."""
    return _batch_folder(folder, _dict_batch(_reconstruct_call((EXAMPLES, 3072)), _labels(20)))


def nested_labels(folder: Path) -> str:
    """Labels as a list of lists sharing one object at every level, 2**27 leaves."""
    labels: object = 0
    for _ in range(27):
        labels = [labels, labels]
    data = np.zeros((EXAMPLES, 3072), np.uint8)
    return _batch_folder(folder, python2_pickle({b"data": data, b"labels": labels}))


def bad_key(folder: Path) -> str:
    """A batch dict with the key ``b"\\xff"`` (not text)."""
    data = np.zeros((EXAMPLES, 3072), np.uint8)
    labels = [i % 10 for i in range(EXAMPLES)]
    return _batch_folder(folder, python2_pickle({b"data": data, b"labels": labels, b"\xff": 1}))


def labels_out_of_range(folder: Path) -> str:
    """CIFAR-10 python labels 57 and -3."""
    data = np.zeros((EXAMPLES, 3072), np.uint8)
    labels = [57, -3] + [i % 10 for i in range(EXAMPLES - 2)]
    return _batch_folder(folder, python2_pickle({b"data": data, b"labels": labels}))


def _tar_bytes(infos: list[tuple[tarfile.TarInfo, bytes]], form: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=form) as archive:
        for info, content in infos:
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    return compressor.compress(data) + compressor.flush()


def big_pax_header(folder: Path) -> str:
    """A tar whose first member carries a 1 MB pax header."""
    info = tarfile.TarInfo(f"{PY10}/readme.html")
    info.pax_headers = {"comment": "0 " * 500_000}
    path = folder / "pax.tar"
    path.write_bytes(_tar_bytes([(info, b"x")]))
    return str(path)


def sparse_map_x(folder: Path) -> str:
    """A pax header ``GNU.sparse.map=x``."""
    info = tarfile.TarInfo(f"{PY10}/data_batch_1")
    info.pax_headers = {"GNU.sparse.map": "x", "GNU.sparse.size": "10"}
    path = folder / "sparse_map.tar.gz"
    path.write_bytes(_gzip(_tar_bytes([(info, b"x")])))
    return str(path)


def gnu_sparse_100gib(folder: Path) -> str:
    """An old-GNU sparse member claiming a real size of 100 GiB, one hole: reading it makes
    100 GiB of zeros."""
    header = bytearray(512)
    name = f"{PY10}/data_batch_1".encode()
    header[0 : len(name)] = name
    header[100:108] = b"0000644\x00"
    header[108:116] = b"0000000\x00"
    header[116:124] = b"0000000\x00"
    header[124:136] = b"00000000000\x00"  # size in the archive: 0 (all hole)
    header[136:148] = b"00000000000\x00"
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[257:265] = tarfile.GNU_MAGIC
    real = 100 << 30
    header[386:398] = b"%011o\x00" % (real - 1)  # one 1-byte chunk at the very end
    header[398:410] = b"00000000001\x00"
    header[483:495] = bytes([0x80]) + real.to_bytes(11, "big")  # base-256 real size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)
    body = bytes(header) + b"\x00" * 512 + b"\x00" * 1024
    path = folder / "sparse.tar.gz"
    path.write_bytes(_gzip(body))
    return str(path)


def three_byte_targz(folder: Path) -> str:
    path = folder / "tiny.tar.gz"
    path.write_bytes(b"\x1f\x8b\x08")
    return str(path)


def _cifar_targz(folder: Path, name: str, layout_of: Callable[[str], str] | None = None) -> Path:
    members = member_files("python10", per_batch=EXAMPLES)
    path = folder / name
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for member, content in members.items():
            info = tarfile.TarInfo(layout_of(member) if layout_of else f"{PY10}/{member}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    path.write_bytes(_gzip(buffer.getvalue()))
    return path


def gzip_crc(folder: Path) -> str:
    """A CIFAR archive whose gzip trailer CRC does not match its content."""
    path = _cifar_targz(folder, "crc.tar.gz")
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF
    path.write_bytes(bytes(data))
    return str(path)


def two_folders(folder: Path) -> str:
    """One archive whose batches lie under two different CIFAR folders."""

    def where(member: str) -> str:
        top = "a" if member in ("data_batch_1", "data_batch_2", "data_batch_3") else "b"
        return f"{top}/{PY10}/{member}"

    return str(_cifar_targz(folder, "two.tar.gz", where))


def _png(folder: Path, name: str, image) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def big_pngs(folder: Path, count: int = 20) -> str:
    """``count`` grey 4000 x 4000 PNGs of ~16 KB each (20: 4.3 GB once loaded)."""
    from PIL import Image

    root = folder / "big"
    image = Image.new("L", (4000, 4000))
    first = _png(root, "a/0.png", image)
    for index in range(1, count):
        target = root / ("a" if index % 2 == 0 else "b") / f"{index}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(first.read_bytes())
    return str(root)


def bomb_png(folder: Path) -> str:
    """A 70-byte PNG declaring 20000 x 20000 pixels (PIL's DecompressionBombError)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    root = folder / "bomb"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        (root / label / "0.png").write_bytes(png)
    return str(root)


def png16(folder: Path) -> str:
    """16-bit grey PNGs with values up to 63,000."""
    from PIL import Image

    root = folder / "png16"
    for label in ("a", "b"):
        for index in range(EXAMPLES):
            values = np.full((8, 8), 63_000 if label == "a" else 1_000 + index, np.uint16)
            _png(root, f"{label}/{index}.png", Image.fromarray(values))
    return str(root)


def _npz(folder: Path, name: str, **arrays: np.ndarray) -> str:
    path = folder / name
    np.savez(path, **arrays)
    return str(path)


def npz_values(value: float) -> Callable[[Path], str]:
    def write(folder: Path) -> str:
        x = np.random.default_rng(0).random((2 * EXAMPLES, 3, 8, 8))
        x[1, 0, 2, 2] = value
        labels = np.arange(2 * EXAMPLES) % 2
        return _npz(folder, f"value_{value}.npz", x_train=x, y_train=labels)

    return write


def npz_images(shape: tuple[int, ...]) -> Callable[[Path], str]:
    def write(folder: Path) -> str:
        shape_of = (2 * EXAMPLES, *shape) if shape else ()
        labels = np.arange(2 * EXAMPLES) % 2
        name = "images_" + ("x".join(map(str, shape)) or "0d") + ".npz"
        images = np.random.default_rng(0).integers(0, 256, shape_of, dtype=np.uint8)
        return _npz(folder, name, x_train=images, y_train=labels)

    return write


def npy_huge_header(folder: Path) -> str:
    """An .npz whose x_train.npy header declares a (900_000_000, 3, 32, 32) uint8 array
    (2.6 TiB); the data is a few bytes."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (900_000_000, 3, 32, 32)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    path = folder / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", buffer.getvalue() + b"\x00" * 64)
        labels = io.BytesIO()
        np.save(labels, np.array([0, 1]))
        archive.writestr("y_train.npy", labels.getvalue())
    return str(path)


HOSTILE: dict[str, Callable[[Path], str]] = {
    "punycode pickle": punycode_pickle,
    "pax header 1 MB": big_pax_header,
    "_reconstruct (500000, 3072)": huge_reconstruct,
    "GNU sparse 100 GiB": gnu_sparse_100gib,
    "20 grey 4000x4000 PNGs": big_pngs,
    ".npy header 2.6 TiB": npy_huge_header,
    "nested-list labels depth 27": nested_labels,
    "_reconstruct without state": stateless_reconstruct,
    ".npz NaN pixel": npz_values(float("nan")),
    ".npz inf pixel": npz_values(float("inf")),
    ".npz 1e300 pixel": npz_values(1e300),
    "16-bit PNG": png16,
    "CIFAR labels 57 and -3": labels_out_of_range,
    "gzip CRC error": gzip_crc,
    "batches under two folders": two_folders,
    'pickle key b"\\xff"': bad_key,
    "pax GNU.sparse.map=x": sparse_map_x,
    "3-byte .tar.gz": three_byte_targz,
    "decompression-bomb PNG": bomb_png,
    "0-d .npz images": npz_images(()),
    "0x0 .npz images": npz_images((0, 0)),
    "1x1 .npz images": npz_images((1, 1)),
}
"""Name -> writer of the hostile input; every one must be refused by ``load_dataset`` with one
:class:`NormlabError` line, within seconds and bounded memory."""


def write_all(folder: Path) -> dict[str, str]:
    """Write every hostile input under ``folder`` (one subfolder each); name -> path."""
    paths = {}
    for index, (name, writer) in enumerate(HOSTILE.items()):
        sub = folder / f"{index:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        paths[name] = writer(sub)
    return paths
