"""A clock the window tests move by hand (nothing sleeps), the windows they use, and which
batches a window holds, computed independently of Tally."""

from __future__ import annotations

import math

B, K = 60, 4  # the windows of these tests: 4 buckets of a minute
START = 1_800_000_000.0  # a bucket boundary (a multiple of 60)
#: When each batch of a test is applied (seconds after START): two in the first bucket, one
#: alone, a bucket with none, a bucket that holds the last three.
OFFSETS = [0.0, 59.9, 60.0, 185.5, 200.0, 239.99]
WINDOW = {"bucket_seconds": B, "buckets": K}


class FakeClock:
    """Unix seconds that a test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def inside(times: list[float], now: float, seconds: int) -> list[int]:
    """The positions of the times in the window of `seconds` ending with the bucket of `now`:
    bucket floor(t / B) within the last seconds / B buckets (computed here, not by Tally)."""
    current = math.floor(now / B)
    return [i for i, t in enumerate(times) if current - seconds // B < math.floor(t / B)
            <= current]
