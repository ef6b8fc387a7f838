"""The write-up's three Keras models converted: how exact, and how long conversion takes.

    KERAS_BACKEND=torch python benchmarks/keras_conversion.py [--filters 64] [--batch 32]

Each model of ``examples/keras_writeup.py`` (stem, one block, pooling, logits; 32x32x3 input,
10 classes) gets random weights and moving statistics, is converted with ``from_keras``, and
its output is compared with Keras's own forward on the same random images (float32): in
inference, and in one training-mode forward (BN's moving statistics compared too). Prints the
largest absolute difference and that difference relative to the largest output magnitude, and
the median of 5 conversions (Keras imported beforehand; its import time is printed apart).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    import keras

    print(
        f"import keras ({keras.backend.backend()} backend): {time.perf_counter() - started:.2f} s"
    )
    from normlab.keras import from_keras
    from normlab.train.model_ref import resolve_factory

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, 32, 32, 3)).astype(np.float32)
    for factory in ("bn_model", "no_norm_model", "ln_model"):
        model = resolve_factory(f"{ROOT / 'examples' / 'keras_writeup.py'}:{factory}")(
            num_classes=10, input_shape=(32, 32, 3), filters=args.filters
        )
        for variable in model.weights:
            shape = tuple(variable.shape)
            low = 0.5 if "variance" in variable.path else -1.0
            value = rng.uniform(low, 2.0 if low > 0 else 1.0, size=shape) * (
                1.0 if low > 0 else float(np.sqrt(3.0 / max(1, np.prod(shape[:-1]))))
            )
            variable.assign(value.astype(np.float32))
        seconds = []
        for _ in range(5):
            began = time.perf_counter()
            module = from_keras(model)
            seconds.append(time.perf_counter() - began)
        lines = [
            f"{factory} ({args.filters} filters): conversion {statistics.median(seconds) * 1e3:.1f} ms"
        ]
        nchw = torch.from_numpy(x).permute(0, 3, 1, 2)
        for training in (False, True):
            module.train(training)
            with torch.no_grad():
                ours = module(nchw).numpy()
            theirs = keras.ops.convert_to_numpy(model(x, training=training))
            difference = float(np.abs(ours - theirs).max())
            scale = float(np.abs(theirs).max())
            mode = "training" if training else "inference"
            lines.append(
                f"  {mode}: largest |difference| {difference:.3g} (output max {scale:.3g}, "
                f"relative {difference / max(1.0, scale):.3g})"
            )
        norms = [m for m in module.modules() if hasattr(m, "running_var")]
        keras_norms = [layer for layer in model.layers if hasattr(layer, "moving_variance")]
        for ours, theirs in zip(norms, keras_norms, strict=True):
            stats = (
                np.abs(ours.running_mean.numpy() - theirs.moving_mean.numpy()).max(),
                np.abs(ours.running_var.numpy() - theirs.moving_variance.numpy()).max(),
            )
            lines.append(
                f"  {theirs.name}: moving mean / variance differ by {stats[0]:.3g} / {stats[1]:.3g}"
            )
        print("\n".join(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
