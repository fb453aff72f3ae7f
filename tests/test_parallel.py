"""app/parallel.py: one request's pieces of CPU work on two threads, results in order, and
every piece finished before the caller goes on (even when one fails)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.parallel import SPLIT_THREADS, run_split


def test_results_come_in_order_and_the_last_call_runs_here():
    where = {}

    def piece(i):
        def call():
            where[i] = threading.current_thread()
            return i * 10
        return call

    assert run_split([piece(i) for i in range(4)]) == [0, 10, 20, 30]
    assert where[3] is threading.current_thread()
    assert all(where[i] is not threading.current_thread() for i in range(3))
    assert run_split([]) == []


def test_the_pieces_run_at_the_same_time():
    """Each piece waits for the other: this only returns if both run at once."""
    barrier = threading.Barrier(2, timeout=10)
    assert run_split([barrier.wait, barrier.wait]) in ([0, 1], [1, 0])


def test_a_failing_piece_raises_after_every_piece_finished():
    finished = threading.Event()

    def slow():
        time.sleep(0.2)
        finished.set()
        return 1

    def fails():
        raise ValueError("bad piece")

    with pytest.raises(ValueError, match="bad piece"):
        run_split([slow, fails])  # the one that fails runs here, first
    assert finished.is_set()
    finished.clear()
    with pytest.raises(ValueError, match="bad piece"):
        run_split([fails, slow])
    assert finished.is_set()


def test_a_full_pool_only_queues():
    """More callers at once than the pool has threads: each gets its own results."""
    callers = SPLIT_THREADS._max_workers * 4

    def caller(i):
        return run_split([lambda: time.sleep(0.01) or i, lambda: -i])

    with ThreadPoolExecutor(callers) as pool:
        assert list(pool.map(caller, range(callers))) == [[i, -i] for i in range(callers)]
