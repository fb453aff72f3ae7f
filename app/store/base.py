"""The storage protocol: what the service needs from a place that keeps metric state.

A store knows sessions, epochs, idempotency keys and two flat spaces of numbers (`state.py`).
It never knows what a metric means: it adds, maxes or mins the runs it is given, atomically
per batch. Two implementations pass one contract test-suite: `MemoryStore` and `RedisStore`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.errors import Conflict, Invalid, KeyReused, NotFound, TallyError
from app.store.state import Runs, State

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
IDEMPOTENCY_KEYS_PER_SESSION = 100_000


@dataclass
class SessionMeta:
    """A session's identity: what metric it hosts, with which config, at which epoch."""

    name: str
    metric: str  # canonical class name
    args: dict[str, Any]  # constructor arguments as given, to rebuild the metric
    config: dict[str, Any]  # full get_config()
    epoch: int = 0
    created_at: float = 0.0  # unix seconds
    ttl_seconds: int | None = None
    id: str = ""  # this incarnation of the name: a deleted and re-created session differs
    layout: dict[str, Any] | None = None  # a lazy metric's shapes, fixed by the first batch
    window: Window | None = None  # per-bucket contributions kept besides the epoch's state
    slices: int | None = None  # distinct slice values an epoch may keep (None: not sliced)
    #: The state's version: every applied batch and every reset bumps it (Redis: meta field
    #: `v`), so with `id` and `epoch` it names the state's content (the result cache's key).
    version: int = 0


@dataclass(frozen=True)
class Window:
    """A session's time window: the contributions of the last `buckets` buckets of
    `bucket_seconds` seconds each (bucket i: times [i*B, (i+1)*B) since the Unix epoch)."""

    bucket_seconds: int
    buckets: int

    def bucket_at(self, now: float) -> int:
        """The index of the bucket that holds time `now` (Unix seconds)."""
        return math.floor(now / self.bucket_seconds)

    def expires_in(self, bucket: int, now: float) -> int:
        """Seconds from `now` until bucket `bucket` can no longer be part of any window (the
        bucket `buckets` later has begun), at least 1: the Redis key's EXPIRE."""
        end = (bucket + self.buckets) * self.bucket_seconds
        return max(1, math.ceil(end - now))

    def as_json(self) -> dict[str, int]:
        return {"bucket_seconds": self.bucket_seconds, "buckets": self.buckets}


#: The clock stores read for the window buckets (Unix seconds): injectable, so that tests move
#: time without sleeping.
Clock = Callable[[], float]


@dataclass
class SliceRuns:
    """What one batch adds to one slice's state (laid out as the session's own state)."""

    value: str
    sums: Runs = field(default_factory=Runs)
    maxes: Runs = field(default_factory=Runs)
    mins: Runs = field(default_factory=Runs)


@dataclass
class Joined:
    """A request whose increments a merged batch carries besides its own (app/merging.py):
    its key is answered as if it had been applied alone, with its own sample count."""

    idempotency_key: str | None
    fingerprint: str
    samples: int


@dataclass
class Batch:
    """One update's (or merge's) increments with its preconditions. A batch of a sliced
    session also carries each slice value's increments (`slices`) and the size of one state
    in each space (`stride`: sum elements, extreme elements), where slice k lives at k x
    stride of the slices' own strings."""

    sums: Runs = field(default_factory=Runs)
    maxes: Runs = field(default_factory=Runs)
    mins: Runs = field(default_factory=Runs)
    samples: int = 0
    epoch: int | None = None  # apply only if the session is at this epoch
    idempotency_key: str | None = None
    fingerprint: str = ""  # what the key is bound to (route and body): another one is refused
    session_id: str | None = None  # computed for this incarnation; else `StaleSession`
    layout: str | None = None  # canonical JSON; the first one sticks, others: `LayoutMismatch`
    slices: list[SliceRuns] = field(default_factory=list)
    stride: tuple[int, int] = (0, 0)
    #: A merged batch: the other requests it carries (`samples` and the key above are the
    #: first request's). If any of their keys (or the first's) has an answer already, the
    #: store applies nothing and answers `MergedKeySeen`: the service then sends them alone.
    joined: list[Joined] = field(default_factory=list)


@dataclass
class Applied:
    """How a batch was answered: the epoch it landed in, or the first answer replayed."""

    epoch: int
    samples: int
    replayed: bool = False


@dataclass
class Snapshot:
    """A session's meta and current state, read atomically together."""

    meta: SessionMeta
    state: State


#: The state of a listed session that the store did not read (see `Store.list`'s `known`).
UNREAD = State()


class KnownState(Protocol):
    """What a listing's caller already holds of a session (see `Store.list`'s `known`): the
    meta of the state it has a result of, and how many elements that state holds (sums plus
    extremes), which the page's budget counts for a session it does not read. (The result
    cache's entries are this, so a cold listing builds no second object per session.)"""

    @property
    def meta(self) -> SessionMeta: ...

    @property
    def elements(self) -> int: ...


#: What a listing's caller already holds, by name.
Known = Callable[[str], "KnownState | None"]


@dataclass
class Slices:
    """A session's meta and the states of its slices (all, or the one asked for), read
    atomically together."""

    meta: SessionMeta
    states: dict[str, State]


@dataclass
class ClosedEpoch:
    """A closed epoch in the history: its raw state until the service has computed its result
    (`compact`), then only the result (a closed epoch never changes, so the result is final).
    A sliced session's epoch keeps its slices' states, then their results, the same way."""

    epoch: int
    closed_at: float
    state: State | None = None
    result: Any = None
    compacted: bool = False
    slices: dict[str, State] | None = None
    slice_results: dict[str, Any] | None = None


@dataclass
class Page:
    """One page of a listing: the sessions, and the name to continue after (None: done)."""

    sessions: list[Snapshot]
    last: str | None


def canonical_layout(layout: dict[str, Any]) -> str:
    """The one spelling of a layout that stores compare."""
    return json.dumps(layout, sort_keys=True, separators=(",", ":"))


class EpochMismatch(Conflict):
    def __init__(self, name: str, expected: int, current: int) -> None:
        super().__init__(f"session {name!r} is at epoch {current}, not the epoch {expected} "
                         "the request expects; nothing was applied")
        self.current = current


class LayoutMismatch(Invalid):
    def __init__(self, name: str, current: str, wanted: str) -> None:
        super().__init__(f"session {name!r} has variables built for {current} by its first "
                         f"batch; this batch implies {wanted}; nothing was applied")


class KeyBoundElsewhere(KeyReused):
    def __init__(self, name: str, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} already answered a different request on "
                         f"session {name!r} (another route or body); a key names one request. "
                         "Nothing was applied")


class StaleSession(Conflict):
    """The batch was computed for an earlier session of the same name (deleted, re-created)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"session {name!r} was re-created while the request was in flight")


class TooManySlices(Invalid):
    """Past the session's slice limit: in the epoch, or (`in_bucket`) in the current window
    bucket of a windowed session, which keeps at most as many (a reset may have let other
    values into the epoch while the bucket still holds the earlier ones)."""

    def __init__(self, name: str, limit: int, have: int, new: list[str],
                 in_bucket: bool = False) -> None:
        shown = ", ".join(repr(v)[:60] for v in new[:5]) + (", ..." if len(new) > 5 else "")
        where = "per window bucket and the current bucket" if in_bucket else \
            "per epoch and"
        super().__init__(f"session {name!r} keeps at most {limit} slices {where} has "
                         f"{have}; this batch brings {len(new)} new ([{shown}]), which would "
                         "make more. Nothing was applied")


class MergedKeySeen(Conflict):
    """A merged batch met an Idempotency-Key already answered: nothing was applied, and the
    service sends its requests one by one (a replay is answered alone)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a merged update of session {name!r} carries a key already answered")


class SessionNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no session named {name!r}")


class Store(Protocol):
    async def create(self, meta: SessionMeta) -> tuple[SessionMeta, bool]:
        """Create the session unless it exists; return the stored meta and whether it is new."""
        ...

    async def get_meta(self, name: str) -> SessionMeta | None: ...

    async def apply(self, name: str, batches: list[Batch]) -> list[Applied | TallyError]:
        """Apply each batch atomically (all its increments or none), in one round trip.

        A batch whose epoch precondition fails gets an `EpochMismatch`; one whose idempotency
        key was seen within the window gets the first answer with `replayed=True` (or
        `KeyBoundElsewhere` when its fingerprint differs); a missing session gives
        `SessionNotFound` for every batch. A batch applied to a session with a window is
        also added to its current bucket, in the same atomic step (a refused or replayed
        batch lands in neither). A batch's slice values that the epoch has not seen yet are
        admitted in the same step, or, past the session's `slices` limit, the whole batch is
        refused (`TooManySlices`).
        """
        ...

    async def read(self, name: str) -> Snapshot | None: ...

    async def read_window(self, name: str, buckets: int) -> Snapshot | None:
        """The session's meta and the sum of its window buckets: the current bucket (by the
        store's clock) and the `buckets - 1` before it, read atomically together (one round
        trip). The session must have a window."""
        ...

    async def reset(self, name: str, expected_epoch: int | None = None
                    ) -> tuple[ClosedEpoch, SessionMeta]:
        """Close the current epoch into the history (with its raw state), zero the state,
        open the next epoch."""
        ...

    async def read_window_slices(self, name: str, buckets: int, value: str | None = None
                                 ) -> Slices | None:
        """The session's meta and its slices' states summed over its last `buckets` window
        buckets (as `read_window`): every slice any of them holds, or only `value` (an empty
        dict when none holds it), in order of first appearance. None: no session."""
        ...

    async def read_slices(self, name: str, value: str | None = None) -> Slices | None:
        """The session's meta and its slices' states: every slice of the current epoch, or
        only `value` (an empty dict when the epoch has not seen it). None: no session."""
        ...

    async def compact(self, name: str, epoch: int, result: bytes,
                      slices: bytes | None = None) -> None:
        """Replace a closed epoch's raw state in the history by its result (JSON), and a
        sliced session's slice states by their results (a JSON object value -> result)."""
        ...

    async def history(self, name: str) -> list[ClosedEpoch] | None: ...

    async def delete(self, name: str) -> bool: ...

    async def list(self, prefix: str = "", after: str | None = None, limit: int = 100,
                   max_elements: int | None = None, known: Known | None = None) -> Page:
        """Live sessions whose name starts with `prefix` and sorts after `after`, by name:
        at most `limit`, and fewer when their states together exceed `max_elements` (at
        least one). Costs O(page), whatever else the store holds.

        `known(name)`: the meta and size of a state the caller already has (its result
        cached). A store may answer `Snapshot(that meta, UNREAD)` without reading the session
        when its stored id and version are that meta's (every write bumps the version)."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
