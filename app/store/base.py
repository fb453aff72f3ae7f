"""The storage protocol: what the service needs from a place that keeps metric state.

A store knows sessions, epochs, idempotency keys and flat maps of numbers. It never knows what
a metric means: it adds, maxes or mins the increments it is given, atomically per batch.
Two implementations pass one contract test-suite: `MemoryStore` and `RedisStore`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.errors import Conflict, Invalid, NotFound, TallyError

IDEMPOTENCY_TTL_SECONDS = 24 * 3600


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


@dataclass
class Batch:
    """One update's (or merge's) increments with its preconditions."""

    sums: dict[str, float] = field(default_factory=dict)
    maxes: dict[str, float] = field(default_factory=dict)
    mins: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    epoch: int | None = None  # apply only if the session is at this epoch
    idempotency_key: str | None = None
    session_id: str | None = None  # computed for this incarnation; else `StaleSession`
    layout: str | None = None  # canonical JSON; the first one sticks, others: `LayoutMismatch`


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
    fields: dict[str, float]


@dataclass
class ClosedEpoch:
    epoch: int
    closed_at: float
    fields: dict[str, float]


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


class StaleSession(Conflict):
    """The batch was computed for an earlier session of the same name (deleted, re-created)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"session {name!r} was re-created while the request was in flight")


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
        key was seen within 24 h gets the first answer with `replayed=True`; a missing session
        gives `SessionNotFound` for every batch.
        """
        ...

    async def read(self, name: str) -> Snapshot | None: ...

    async def reset(self, name: str, expected_epoch: int | None = None
                    ) -> tuple[ClosedEpoch, SessionMeta]:
        """Close the current epoch into the history, zero the state, open the next epoch."""
        ...

    async def history(self, name: str) -> list[ClosedEpoch] | None: ...

    async def delete(self, name: str) -> bool: ...

    async def list(self, prefix: str = "") -> list[Snapshot]:
        """Every live session whose name starts with `prefix`, sorted by name."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
