"""How much freed memory the C allocator keeps for reuse (`TALLY_ALLOCATOR_KEEP_BYTES`).

glibc's malloc hands a large block back to the kernel as soon as it is freed: blocks above its
mmap threshold are unmapped, and free memory at the top of a heap beyond its trim threshold is
trimmed. The next request of the same size then gets fresh pages, and the kernel zeroes each
4 KiB page on first touch. A large update allocates several blocks of its body's size (the
server's chunks, the joined body, the decoded arrays), so an 8 MB `.npz` spent more time in
page faults than in its AUC math: in BENCHMARKS.md, the bare endpoint that only reads that
body took 14.4 ms with glibc's defaults and 5-6.6 ms with them raised.

`keep_freed_memory(n)` raises both thresholds to `n` bytes (the mmap threshold at most glibc's
ceiling of 32 MiB), and limits the allocator to ARENAS arenas: each arena (glibc makes one per
thread up to 8 per core) may keep up to `n` bytes free, so the memory kept stays under about
ARENAS x `n`. The process' resident size after a large request stays that much higher; it is
reused by the next one. With the GIL, more arenas buy Tally little.

Other C libraries (musl, macOS) are left alone: `keep_freed_memory` says so by returning False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("tally")

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc refuses a larger mmap threshold on 64-bit
ARENAS = 2


def glibc() -> ctypes.CDLL | None:
    """The process' C library when it is glibc (it has `gnu_get_libc_version`), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def keep_freed_memory(keep_bytes: int) -> bool:
    """Let malloc keep up to `keep_bytes` freed bytes per arena instead of returning them to
    the kernel (0: glibc's defaults, untouched). True when the allocator took the settings."""
    if keep_bytes <= 0:
        return False
    libc = glibc()
    if libc is None:
        log.info("the C library is not glibc: TALLY_ALLOCATOR_KEEP_BYTES has no effect")
        return False
    wanted = [(M_ARENA_MAX, ARENAS), (M_MMAP_THRESHOLD, min(keep_bytes, MMAP_THRESHOLD_MAX)),
              (M_TRIM_THRESHOLD, min(keep_bytes, 2**31 - 1))]
    return all(libc.mallopt(param, value) == 1 for param, value in wanted)
