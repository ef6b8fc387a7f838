"""Each hostile data file of tests/data/hostile_files.py loaded by ``load_dataset`` in a fresh
process under a memory cap and a timeout: its one-line message, wall time and peak memory.

    PYTHONPATH=src python benchmarks/hostile_files.py [--cap-gib 3] [--timeout 60] [NAME ...]

Peak memory is the child's maximum resident set (``os.wait4`` rusage), which includes the
interpreter with torch and NumPy imported (the baseline line measures that alone).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))

from hostile_files import write_all  # noqa: E402

CHILD = """
import resource, sys
cap = int(sys.argv[2]) << 20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
import torch
torch.set_num_threads(1)
from normlab.data import load_dataset
from normlab.errors import NormlabError
def peak():
    print(f"PEAK {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
if sys.argv[1] == "-":
    print("baseline (imports only)")
    peak()
    sys.exit(0)
import time, tracemalloc
tracemalloc.start()
started = time.perf_counter()
def load_stats():
    seconds = time.perf_counter() - started
    print(f"LOAD {seconds:.3f} {tracemalloc.get_traced_memory()[1]}", file=sys.stderr)
try:
    data = load_dataset(sys.argv[1])
except NormlabError as error:
    load_stats()
    print(f"NormlabError: {error}")
    peak()
    sys.exit(2)
load_stats()
print(f"LOADED {len(data.y_train)} train examples, x_train range "
      f"[{float(data.x_train.min()):g}, {float(data.x_train.max()):g}], "
      f"{data.num_classes} classes")
peak()
"""


def measure(path: str, cap_mib: int, timeout: float) -> tuple[str, float, float, int, str]:
    """(first line of output or last line of the traceback, seconds, peak MiB, exit code, the
    load's own seconds and tracemalloc peak)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, path, str(cap_mib)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return f"TIMEOUT after {timeout:.0f} s (killed)", timeout, float("nan"), -9, ""
    seconds = time.perf_counter() - started
    peaks = [line for line in err.splitlines() if line.startswith("PEAK ")]
    peak = int(peaks[-1].split()[1]) / 1024 if peaks else float("nan")
    loads = [line.split() for line in err.splitlines() if line.startswith("LOAD ")]
    load = "load raised"
    if loads:
        load = f"load {float(loads[-1][1]):.3f} s, tracemalloc peak {int(loads[-1][2]) / 2**20:.1f} MiB"
    errors = [
        line
        for line in err.splitlines()
        if line.strip() and not line.startswith(("PEAK ", "LOAD "))
    ]
    text = out.strip().splitlines()[0] if out.strip() else (errors[-1] if errors else "")
    return text, seconds, peak, process.returncode, load


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--cap-gib", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    cap = int(args.cap_gib * 1024)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_all(Path(folder))
        rows = [("baseline", "-")] + [
            (name, path) for name, path in paths.items() if not args.names or name in args.names
        ]
        for name, path in rows:
            size = 0 if path == "-" else _size(Path(path))
            text, seconds, peak, code, load = measure(path, cap, args.timeout)
            text = text.replace(folder, "<tmp>")
            print(
                f"{name} ({size:,} bytes): exit {code}, process {seconds:.1f} s, {load}, "
                f"peak RSS {peak:.0f} MiB: {text}",
                flush=True,
            )


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


if __name__ == "__main__":
    main()
