"""Large CPU tensors from malloc's heap (train.heap_allocations).

glibc's malloc serves every block above its mmap threshold (dynamic, at most 32 MiB) with fresh pages from the
kernel and gives them back on free. A CPU training step allocates and frees the same large buffers every step (the
vocabulary-sized logits and their gradient, the embedding gradient, activations), so each step pays again for
page faults and zeroed pages. Raising the threshold to 1 GiB keeps those blocks in the heap, where the next step
reuses them: the benchmark model of benchmarks/mlm_throughput.py (bf16, 2 CPU cores) trained about 15% faster in a
bare loop. The trim threshold is raised with it, or free() hands a large block at the top of the heap back to the
kernel all the same: raising it took a bare fp32 loop of the same model, with plmkit's head, loss and allocator,
from 19,000-38,000 page faults a step to about 300, and `plm pretrain` of that benchmark ran 3-5% more tokens/s
(fp32 and bf16). PyTorch's performance tuning guide makes the same point when it recommends jemalloc or TCMalloc
for CPU training. The price: memory freed by the process stays with it (its resident size does not shrink after a peak).

The setting is process-wide and stays for the life of the process (glibc cannot switch back to its dynamic
threshold). Nothing happens on other C libraries (macOS, musl) or where mallopt is missing.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""mallopt's parameter numbers for the trim and mmap thresholds (malloc.h)."""
THRESHOLD = 1 << 30
"""Blocks up to 1 GiB come from the heap, and up to 1 GiB of free memory at its top stays there."""

_applied = False


def heap_for_large_tensors() -> bool:
    """Raise glibc's mmap threshold to THRESHOLD for this process (once); True when it is in effect."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library the process already uses
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: its mallopt parameters are the ones above
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # Both: with only the mmap threshold set, glibc keeps its default trim threshold (128 KiB), so a large block
    # freed at the top of the heap goes back to the kernel and the next step faults its pages in again.
    _applied = mallopt(M_MMAP_THRESHOLD, THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, THRESHOLD) == 1
    return _applied
