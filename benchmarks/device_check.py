"""Checks and timings for a machine with a GPU and many cores (not part of the test suite).

1. ``--device cuda``: the packed engine and the plain engine on CUDA give the results they give
   on the CPU (within float32 rounding), dropout and augmentation included.
2. ``normlab run --quick`` with ``--device cuda``, packed and not.
3. Threads on a quiet vs a busy 2-core machine: ``normlab run --quick --workers W --threads T``
   pinned to two cores with ``taskset``, alone and beside one CPU-bound process on those cores.

    PYTHONPATH=src python benchmarks/device_check.py [--skip-cuda] [--skip-threads]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

from normlab.data import synthetic
from normlab.train import RunConfig, train_run
from normlab.train.packed import train_packed


def cuda_equivalence() -> None:
    data = synthetic(num_examples=200, num_classes=4, size=8, noise=0.8, seed=0)
    base = RunConfig(
        dataset="synthetic",
        dataset_options={"num_examples": 200, "num_classes": 4, "size": 8, "noise": 0.8},
        widths=(4, 8, 8),
        batch_size=8,
        lr=0.05,
        steps=20,
        augment=True,
        dropout=0.1,
    )
    configs = [base.replace(seed=s, lr=0.05 / (1 + s)) for s in range(4)]
    for device in ("cpu", "cuda"):
        packed = train_packed(configs, data, device=device)
        alone = [train_run(c, data, device=device) for c in configs]
        for p, a in zip(packed, alone, strict=True):
            print(
                f"{device}: packed {p.status} loss {p.train_loss:.6f} test {p.test_acc:.3f} "
                f"(pack {p.pack_size}, {p.device}) | alone {a.status} loss {a.train_loss:.6f} "
                f"test {a.test_acc:.3f}",
                flush=True,
            )


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stderr[-2000:], flush=True)
    return seconds


def quick(extra: list[str], pin: str | None = None) -> float:
    out = tempfile.mkdtemp()
    command = [sys.executable, "-m", "normlab.cli", "run", "--quick", "--quiet", "--out", out]
    if pin:
        command = ["taskset", "-c", pin, *command]
    return timed([*command, *extra])


COMBINATIONS = [("auto", 1, 1), ("auto", 1, 2), ("auto", 2, 1), ("off", 1, 2), ("off", 2, 1)]
"""(--pack, --workers, --threads) timed quiet and busy."""


def threads_table() -> None:
    env = dict(os.environ)
    for busy in (False, True):
        spinner = None
        if busy:
            spinner = subprocess.Popen(
                ["taskset", "-c", "0,1", sys.executable, "-c", "while True: pass"], env=env
            )
        try:
            for pack, workers, threads in COMBINATIONS:
                seconds = quick(
                    [
                        "--device",
                        "cpu",
                        "--pack",
                        pack,
                        "--workers",
                        str(workers),
                        "--threads",
                        str(threads),
                    ],
                    pin="0,1",
                )
                print(
                    f"2 cores, {'busy' if busy else 'quiet'}: --pack {pack} --workers "
                    f"{workers} --threads {threads}: {seconds:.1f} s",
                    flush=True,
                )
        finally:
            if spinner is not None:
                spinner.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cuda", action="store_true")
    parser.add_argument("--skip-threads", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}", flush=True)
    if torch.cuda.is_available() and not args.skip_cuda:
        print(torch.cuda.get_device_name(0), flush=True)
        cuda_equivalence()
        for pack in ("auto", "off"):
            seconds = quick(["--device", "cuda", "--pack", pack, "--workers", "1"])
            print(f"normlab run --quick --device cuda --pack {pack} --workers 1: {seconds:.1f} s")
    if not args.skip_threads:
        threads_table()


if __name__ == "__main__":
    main()
