"""One large request's CPU work split over threads: zlib's CRC and numpy's loops release the
GIL, so the two 4 MB members of a 1M-sample `.npz` are checked, and its AUC counts made, on
two cores at once (BENCHMARKS.md: CRC 2.5 -> 1.3 ms, counts 2.8 -> 1.8 ms).

Only leaf work goes to SPLIT_THREADS (never work that submits more), so a full pool only
queues: each caller runs its own last piece itself and then waits for the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

SPLIT_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tally-split")


def run_split(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Each call's result, in order: all but the last in SPLIT_THREADS while this thread
    runs the last. Every call has finished when this returns or raises (no piece still reads
    the caller's arrays); the first error, in order, is raised."""
    if not calls:
        return []
    elsewhere: list[Future[T]] = [SPLIT_THREADS.submit(call) for call in calls[:-1]]
    try:
        here = calls[-1]()
    finally:
        for pending in elsewhere:
            pending.exception()  # waits for it, whatever it raised
    return [pending.result() for pending in elsewhere] + [here]
