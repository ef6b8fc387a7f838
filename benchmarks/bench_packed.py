"""Throughput of the packed engine against a plain PyTorch loop and the same loop compiled.

A thin script over ``normlab bench`` (``normlab.train.bench``, ``normlab.commands.bench``), kept
for the commands recorded in ``docs/BENCHMARKS.md``:

    python benchmarks/bench_packed.py [--threads 1] [--steps 60] [--norms bn,gn,ln]
        [--batch-sizes 2,8,32,128] [--pack-sizes 15,64] [--no-compile] [--json]
"""

from __future__ import annotations

from normlab.commands.bench import bench

if __name__ == "__main__":
    bench(prog_name="bench_packed.py")
