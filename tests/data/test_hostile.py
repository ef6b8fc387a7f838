"""Hostile data files (tests/data/hostile_files.py) are refused with one line, quickly and with
bounded memory: none hangs, exhausts memory, loads wrong data or raises a raw traceback.

Each load runs under a 60 s alarm, a guard against a hang (the refusals take milliseconds; the
unguarded inputs ran for minutes), never a timing assertion, and tracemalloc bounds what it
allocates (NumPy reports its buffers to tracemalloc)."""

from __future__ import annotations

import signal
import tracemalloc

import pytest
from hostile_files import HOSTILE, big_pngs

from normlab.data import load_dataset
from normlab.errors import NormlabError

HANG_GUARD_SECONDS = 60
MEMORY_BOUND = 64 << 20
"""What loading a hostile file may allocate: the largest fixture is 1 MB, the data it would
have loaded gigabytes."""

EXPECTED = {
    "punycode pickle": "refusing _codecs.encode to 'punycode'",
    "pax header 1 MB": "pax header of 1,000,017 bytes",
    "_reconstruct (500000, 3072)": "refusing numpy _reconstruct of ndarray with shape (500000",
    "GNU sparse 100 GiB": "sparse member",
    "20 grey 4000x4000 PNGs": "a decompression bomb?",
    ".npy header 2.6 TiB": "declares shape (900000000, 3, 32, 32)",
    "nested-list labels depth 27": "labels are not integers (expected a flat list",
    "_reconstruct without state": "refusing numpy _reconstruct of ndarray with shape (20",
    ".npz NaN pixel": "holds the value nan",
    ".npz inf pixel": "holds the value inf",
    ".npz 1e300 pixel": "holds the value 1e+300",
    "16-bit PNG": "I;16 image",
    "CIFAR labels 57 and -3": "outside 0..9",
    "gzip CRC error": "CRC check failed",
    "batches under two folders": "CIFAR batches under two folders",
    'pickle key b"\\xff"': "is not ASCII text",
    "pax GNU.sparse.map=x": "truncated or corrupt archive",
    "3-byte .tar.gz": "truncated or corrupt archive",
    "decompression-bomb PNG": "could be decompression bomb",
    "0-d .npz images": "must be (N, H, W), NHWC or NCHW, got ()",
    "0x0 .npz images": "images are 0x0",
    "1x1 .npz images": "images are 1x1",
}


def test_every_hostile_input_has_an_expected_refusal():
    assert set(EXPECTED) == set(HOSTILE)


def _hang(signum, frame):
    raise TimeoutError(f"loading ran past the {HANG_GUARD_SECONDS} s guard")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_file_is_refused_in_one_line(name, tmp_path):
    writer = HOSTILE[name]
    path = big_pngs(tmp_path, count=2) if writer is big_pngs else writer(tmp_path)
    previous = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(HANG_GUARD_SECONDS)
    tracemalloc.start()
    try:
        with pytest.raises(NormlabError) as refusal:
            load_dataset(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    message = str(refusal.value)
    assert "\n" not in message and EXPECTED[name] in message, message
    assert str(tmp_path) in message  # names the file or folder at fault
    assert peak < MEMORY_BOUND, f"{peak / 2**20:.0f} MiB"
