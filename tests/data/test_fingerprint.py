"""Data fingerprints: stable, content-based, and changed_files names the file that changed."""

import json

import numpy as np

from normlab.data import changed_files, current_records, data_fingerprint, file_record, load_dataset
from normlab.data.fingerprint import HASH_CHUNK_BYTES


def write_npz(path, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(
        path, x_train=rng.integers(0, 256, (20, 4, 4, 3), dtype=np.uint8), y_train=np.arange(20) % 2
    )


def test_builtins_have_no_files_and_an_empty_fingerprint():
    data = load_dataset("synthetic", num_examples=40)
    assert data.files == () and data_fingerprint(data) == ""


def test_record_hashes_in_chunks_like_hashlib(tmp_path):
    import hashlib

    content = bytes(range(256)) * (HASH_CHUNK_BYTES // 256 * 2 + 3)  # more than two chunks
    (tmp_path / "big.bin").write_bytes(content)
    path, size, sha = file_record(tmp_path / "big.bin")
    assert path == str(tmp_path / "big.bin") and size == len(content)
    assert sha == hashlib.sha256(content).hexdigest()


def test_fingerprint_is_stable_and_follows_content_not_location(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_npz(tmp_path / "a" / "data.npz")
    write_npz(tmp_path / "b" / "data.npz")
    first = load_dataset(str(tmp_path / "a" / "data.npz"))
    moved = load_dataset(str(tmp_path / "b" / "data.npz"))
    assert len(data_fingerprint(first)) == 16
    assert data_fingerprint(first) == data_fingerprint(moved) == data_fingerprint(first.files)
    write_npz(tmp_path / "b" / "data.npz", seed=1)
    assert data_fingerprint(load_dataset(str(tmp_path / "b" / "data.npz"))) != data_fingerprint(
        first
    )


def test_changing_a_byte_is_named_by_changed_files(tmp_path):
    write_npz(tmp_path / "data.npz")
    recorded = json.loads(json.dumps(load_dataset(str(tmp_path / "data.npz")).files))  # as stored
    assert changed_files(recorded, current_records(recorded)) == []
    content = bytearray((tmp_path / "data.npz").read_bytes())
    content[-30] ^= 0xFF  # same size, different content
    (tmp_path / "data.npz").write_bytes(bytes(content))
    assert changed_files(recorded, current_records(recorded)) == [str(tmp_path / "data.npz")]


def test_changed_files_names_vanished_and_new_files_of_a_folder(tmp_path):
    from PIL import Image

    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        for index in range(5):
            Image.new("L", (4, 4), color=index * 40).save(tmp_path / name / f"{index}.png")
    recorded = load_dataset(str(tmp_path), val_fraction=0.2).files
    assert len(recorded) == 10 and list(recorded) == sorted(recorded)
    (tmp_path / "x" / "0.png").unlink()
    Image.new("L", (4, 4)).save(tmp_path / "y" / "new.png")
    current = load_dataset(str(tmp_path), val_fraction=0.2).files
    assert changed_files(recorded, current) == [
        str(tmp_path / "x" / "0.png"),
        str(tmp_path / "y" / "new.png"),
    ]
