"""Which convolutions overflow oneDNN's input-gradient buffer on this CPU (train/conv_guard.py).

Each case runs in a child process (an overflow aborts it, or corrupts its heap silently): 20
forward/backward passes of one convolution over a channels-last input, with glibc's malloc
checks on where the debug library exists, so that an out-of-bounds write is caught at the next
free. Prints the CPU capability torch dispatches to, oneDNN's ISA, and one line per case.

    python benchmarks/onednn_overflow.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

CHILD = """
import sys, torch, torch.nn.functional as F
torch.set_num_threads(1)
channels, kernel, stride, layout = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for _ in range(20):
    x = torch.randn(8, channels, 8, 8)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = torch.randn(8, channels, kernel, kernel, requires_grad=True)
    y = F.conv2d(x, w, stride=stride, padding=kernel // 2)
    torch.autograd.grad(y, (x, w), torch.randn_like(y))
"""

CASES = [
    (channels, kernel, stride, layout)
    for layout in ("channels_last", "contiguous")
    for kernel, stride in ((1, 2), (1, 1), (3, 2))
    for channels in (2, 4, 8, 12, 16)
]
DEBUG_MALLOC = Path("/lib/x86_64-linux-gnu/libc_malloc_debug.so.0")


def main() -> None:
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    environment = dict(os.environ, ONEDNN_VERBOSE="1")
    if DEBUG_MALLOC.exists():
        environment.update(LD_PRELOAD=str(DEBUG_MALLOC), MALLOC_CHECK_="3")
    for channels, kernel, stride, layout in CASES:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(channels), str(kernel), str(stride), layout],
            capture_output=True,
            text=True,
            env=environment,
        )
        lines = child.stdout.splitlines()
        isa = next((line.split(",")[-1] for line in lines if ",isa:" in line), "?")
        backward = next(
            (line.split(",")[6] for line in lines if "backward_data" in line), "native kernel"
        )
        outcome = "ok" if child.returncode == 0 else f"ABORT ({child.stderr.strip()[-60:]})"
        print(
            f"{layout:13} in_channels {channels:2} kernel {kernel} stride {stride}: "
            f"{outcome}  [oneDNN {isa}, input gradient by {backward}]"
        )


if __name__ == "__main__":
    main()
