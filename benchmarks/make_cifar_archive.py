"""Write a CIFAR-10-format python archive (``cifar-10-python.tar.gz`` layout) of the built-in
``shapes`` task, for measuring ``normlab run --data ARCHIVE`` without downloading CIFAR.

    python benchmarks/make_cifar_archive.py OUT.tar.gz [--train 10000] [--test 2000]

Five training batches and one test batch, pickled as the real archive is (dicts with b"data",
N x 3072 uint8 channel-major, and b"labels"); normlab reads it with its restricted unpickler.
"""

from __future__ import annotations

import argparse
import io
import pickle
import tarfile

import numpy as np

from normlab.data.shapes import shapes_arrays


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images (N, 3, 32, 32) rescaled to 0..255 and flattened channel-major."""
    low, high = images.min(), images.max()
    scaled = np.round((images - low) / (high - low) * 255.0).astype(np.uint8)
    return scaled.reshape(len(images), -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output")
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=2000)
    arguments = parser.parse_args()
    images, labels = shapes_arrays(arguments.train + arguments.test, seed=0)
    data = to_uint8(images)
    batches = {
        f"data_batch_{i + 1}": part
        for i, part in enumerate(np.array_split(np.arange(arguments.train), 5))
    }
    batches["test_batch"] = np.arange(arguments.train, arguments.train + arguments.test)
    with tarfile.open(arguments.output, "w:gz") as archive:
        for name, index in batches.items():
            content = pickle.dumps(
                {b"data": data[index], b"labels": [int(v) for v in labels[index]]}, protocol=2
            )
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = len(content)
            archive.addfile(member, io.BytesIO(content))
    print(f"wrote {arguments.output}: {arguments.train} train, {arguments.test} test images")


if __name__ == "__main__":
    main()
