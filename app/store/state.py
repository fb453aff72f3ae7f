"""A session's state as the stores keep it: two flat numeric spaces, moved in runs.

The metric engine lays every variable out in one of two spaces (see `engine.Slots`):

* the *sum* space, float64 values that batches add to (every Keras variable lives here);
* the *extreme* space, float64 values that batches max or min into (plugins only), each with a
  "set" flag, because an element no batch has touched must read as the variable's initial
  value, not as 0.

A batch travels as `Runs`: contiguous index ranges and their values. A store applies a run with
one read and one write of that range (Redis: GETRANGE/SETRANGE on one packed string), so a
batch that touches a few buckets of a large variable costs a few small writes, and a read is
one packed string that numpy parses without a loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Two touched elements closer than this share one run (the gap travels as zeros): fewer, larger
#: writes. Extremes never bridge gaps (writing an untouched element would mark it set).
SUM_GAP = 8


@dataclass
class Runs:
    """Values at contiguous index ranges: run k covers `starts[k]` .. `starts[k]+counts[k]-1`."""

    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def size(self) -> int:
        return int(self.values.size)

    @classmethod
    def from_indices(cls, indices: np.ndarray, dense: np.ndarray, gap: int = 1) -> Runs:
        """Runs covering sorted `indices` of `dense` (values read from `dense`); indices at
        most `gap` apart share a run and the elements between them are sent too."""
        indices = np.asarray(indices, np.int64)
        if indices.size == 0:
            return cls()
        breaks = np.flatnonzero(np.diff(indices) > gap) + 1
        starts = indices[np.concatenate(([0], breaks))]
        ends = indices[np.concatenate((breaks - 1, [indices.size - 1]))] + 1
        counts = ends - starts
        return cls(starts, counts, np.asarray(dense, np.float64)[expand(starts, counts)])

    @classmethod
    def from_dict(cls, values: dict[int, float]) -> Runs:
        """Single-element runs (tests and small merges)."""
        items = sorted(values.items())
        return cls(np.array([k for k, _ in items], np.int64), np.ones(len(items), np.int64),
                   np.array([v for _, v in items], np.float64))

    def indices(self) -> np.ndarray:
        return expand(self.starts, self.counts)

    def concat(self, other: Runs) -> Runs:
        return Runs(np.concatenate((self.starts, other.starts)),
                    np.concatenate((self.counts, other.counts)),
                    np.concatenate((self.values, other.values)))


def expand(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Every index the runs cover, in order (vectorised: no loop over runs)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    if starts.size == 1:  # one run (a small metric's whole state): no repeat/cumsum
        return np.arange(int(starts[0]), int(starts[0]) + total)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + (np.arange(total) - offsets)


@dataclass
class State:
    """A session's variables as stored: `sums` (missing tail = zeros) and the extremes with
    their set flags (missing tail = unset)."""

    sums: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    extremes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    present: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def elements(self) -> int:
        return int(self.sums.size + self.extremes.size)

    def copy(self) -> State:
        return State(self.sums.copy(), self.extremes.copy(), self.present.copy())

    def sums_dict(self) -> dict[int, float]:
        """Non-zero sums by index (tests and debugging)."""
        touched = np.flatnonzero((self.sums != 0) | np.isnan(self.sums))
        return {int(i): float(self.sums[i]) for i in touched}

    def extremes_dict(self) -> dict[int, float]:
        return {int(i): float(self.extremes[i]) for i in np.flatnonzero(self.present)}

    def add(self, runs: Runs) -> None:
        """Add `runs` to the sums (indices within one batch are distinct)."""
        if not len(runs):
            return
        idx = runs.indices()
        self.sums = _grown(self.sums, int(idx.max()) + 1, 0.0)
        self.sums[idx] += runs.values

    def add_sums(self, other: State) -> None:
        """Add another state's sums (window buckets: they hold sums only)."""
        self.sums = _grown(self.sums, other.sums.size, 0.0)
        self.sums[:other.sums.size] += other.sums

    def extreme(self, runs: Runs, kind: str) -> None:
        """Max (`kind="max"`) or min the runs into the extremes; NaN wins, as in the stores."""
        if not len(runs):
            return
        idx = runs.indices()
        size = int(idx.max()) + 1
        self.extremes = _grown(self.extremes, size, 0.0)
        self.present = _grown(self.present, size, False)
        new, old, was = runs.values, self.extremes[idx], self.present[idx]
        better = new > old if kind == "max" else new < old
        take = ~was | better | np.isnan(new)
        self.extremes[idx[take]] = new[take]
        self.present[idx] = True


def _grown(array: np.ndarray, size: int, fill: float | bool) -> np.ndarray:
    """`array` with at least `size` elements (new ones `fill`), writable: the caller adds in
    place, and a parsed state's arrays are read-only views (`state_from`)."""
    if array.size >= size:
        return array if array.flags.writeable else array.copy()
    out = np.full(size, fill, dtype=array.dtype)
    out[:array.size] = array
    return out


def pack_state(state: State) -> bytes:
    """The wire/history form of a state: the Redis layout (float64 sums, then 9-byte extremes
    each a set flag and a float64), behind the sums' byte length."""
    sums = np.ascontiguousarray(state.sums, "<f8").tobytes()
    return len(sums).to_bytes(8, "little") + sums + pack_extremes(state.extremes, state.present)


def unpack_state(blob: bytes) -> State:
    size = int.from_bytes(blob[:8], "little")
    return state_from(blob[8:8 + size], blob[8 + size:])


EXTREME = np.dtype([("set", "u1"), ("value", "<f8")])


def pack_extremes(values: np.ndarray, present: np.ndarray) -> bytes:
    packed = np.zeros(values.size, EXTREME)
    packed["set"] = present
    packed["value"] = values
    return packed.tobytes()


#: The extremes of a state that has none (read-only: zero-size, and never written in place).
NO_EXTREMES = np.zeros(0, np.float64)
NO_FLAGS = np.zeros(0, bool)
NO_EXTREMES.flags.writeable = NO_FLAGS.flags.writeable = False


#: How Redis packs a sum (little-endian float64), and whether that is this machine's float64.
PACKED_SUM = np.dtype("<f8")
NATIVE_SUMS = np.dtype(np.float64) == PACKED_SUM


def state_from(sums: bytes | None, extremes: bytes | None) -> State:
    """Parse the two packed strings (as Redis keeps them) without a Python loop. The sums are
    a read-only view of `sums` (a listing parses thousands: 2.6 -> 1.3 -> 0.6 us each, with
    the dtype object and the count passed positionally); State's methods that add in place
    copy them first."""
    raw_sums = sums or b""
    s = np.frombuffer(raw_sums, PACKED_SUM, len(raw_sums) // 8)
    if not NATIVE_SUMS:  # a big-endian machine
        s = s.astype(np.float64)
    raw = extremes or b""
    if not raw:  # the usual case (only plugins keep extremes)
        return State(s, NO_EXTREMES, NO_FLAGS)
    e = np.frombuffer(raw, EXTREME, count=len(raw) // EXTREME.itemsize)
    return State(s, e["value"].astype(np.float64), e["set"].astype(bool))
