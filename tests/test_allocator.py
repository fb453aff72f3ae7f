"""app/allocator.py: with TALLY_ALLOCATOR_KEEP_BYTES, glibc's malloc serves a large block from
its heap and keeps it after free (the next large request reuses those pages); with 0 it is
left as glibc sets it. Each case runs in its own interpreter: the settings are process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.allocator import glibc

pytestmark = pytest.mark.skipif(glibc() is None, reason="the C library is not glibc")

BLOCK = 8 * 1024 * 1024  # a 1M-sample .npz body

PROBE = """
import ctypes, json, sys
from app.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
took = keep_freed_memory(int(sys.argv[1]))
block = bytearray(int(sys.argv[2]))
held = libc.mallinfo2()
del block
freed = libc.mallinfo2()
print(json.dumps({"took": took, "mapped_while_held": held.hblkhd,
                  "free_kept_after": freed.fordblks}))
"""


def probe(keep_bytes: int, block: int = BLOCK) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(keep_bytes), str(block)],
                         capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_a_large_block_comes_from_the_heap_and_is_kept_after_free():
    seen = probe(64 * 1024 * 1024)
    assert seen["took"] is True
    assert seen["mapped_while_held"] < BLOCK  # not a mapping of its own
    assert seen["free_kept_after"] >= BLOCK  # still the process', for the next request


def test_zero_leaves_glibc_as_it_is():
    seen = probe(0)
    assert seen["took"] is False
    assert seen["mapped_while_held"] >= BLOCK  # glibc's default: a large block is mapped...
    assert seen["free_kept_after"] < BLOCK  # ...and unmapped at free


def test_blocks_above_the_kept_size_are_still_returned():
    seen = probe(1024 * 1024)
    assert seen["took"] is True
    assert seen["mapped_while_held"] >= BLOCK
    assert seen["free_kept_after"] < BLOCK
