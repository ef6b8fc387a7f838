"""Keep freed memory in the process instead of handing it back to the kernel at every step.

glibc's malloc gives a large freed block back to the kernel (``munmap``, or trimming the top of
the heap), so the next step's tensors of the same size come back as fresh pages, each one a page
fault. A packed step at batch 2 allocates and frees a few hundred such tensors (activations,
gradients, optimizer temporaries); measured on the 2-core development machine, 64 runs packed at
batch 2 spent a third of their time in the kernel (2.8 million minor page faults in 100 steps)
and trained 1.4x faster with the three settings below (``docs/BENCHMARKS.md``). They cost only
address space: memory freed at the top of the heap is kept for reuse (up to
``TRIM_THRESHOLD_BYTES``) rather than returned.

:func:`keep_freed_memory` applies them once per process, on Linux with glibc; elsewhere (or with
``NORMLAB_MALLOC_TUNING=0`` in the environment) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
"""``mallopt`` parameter numbers (glibc's ``malloc.h``)."""

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
"""Blocks below this come from the heap, not from their own ``mmap`` (glibc's maximum)."""
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
"""Free memory at the top of the heap kept for reuse before any is returned to the kernel."""
TOP_PAD_BYTES = 256 * 1024 * 1024
"""Extra address space taken each time the heap grows (pages are touched only when used)."""

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings to this process (once); whether they are in effect."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get("NORMLAB_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (M_TOP_PAD, TOP_PAD_BYTES),
    )
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
