"""Results computed once per state: a listing or a dashboard re-reads sessions that did not
change, and computing a result (load the state into a metric, `result()`, to JSON) costs more
than reading the state.

A result is a pure function of the session's metric and arguments (fixed for an incarnation,
`meta.id`: a re-created session has a new one), its layout and its state. Every write of a
state bumps its version (`SessionMeta.version`: Redis' meta field `v`, bumped by apply.lua and
reset.lua; the memory store likewise), so an entry is found by (id, epoch, version). A hit also
needs the same layout and the very same state content (bytes compared, cheap for the states
cached): the result is then the same by construction, even if a write path forgot to bump the
version or a Redis failover lost writes and a later one reused a version number.

A listing on Redis goes one step further (`Store.list`'s `known`): the store compares each
session's id and version with the cached entry's meta in its read script and does not send
the state when they are equal, so an unchanged session costs neither the transfer nor the
parsing. That answer rests on the version alone: every write of a state bumps it (apply.lua,
reset.lua). The one case it cannot tell: a Redis failover loses writes (possible with
TALLY_REDIS_REPLICA_ACKS=0), a later write brings the session back to a version number cached
here, and no read of it came in between; a listing then shows the lost state's result until
the session's next write. GET result compares the bytes and is not affected.

One entry per session name (a new state replaces the old entry), least recently used first
out, bounded by entries and by bytes. Windowed results (`?window=S`) are sums of buckets, not
the epoch's state: they never go through this cache. Thread-safe: a listing computes results
in a worker thread while the event loop serves reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from app.store.base import KnownState, SessionMeta
from app.store.state import State

#: What `get` returns when nothing usable is cached (a result may be None: JSON null).
MISS = object()
#: Bytes charged per entry besides its state's: the entry, its key and a small result.
ENTRY_OVERHEAD = 256
#: A result is charged this many times its state's bytes (Python lists of floats take ~4x
#: the packed doubles; built-in metrics' results are no larger than their states).
RESULT_FACTOR = 4


class _Entry(NamedTuple):
    """A tuple, not a frozen dataclass: a cold listing builds a thousand (1.0 -> 0.3 us). It
    is also what `known` answers (a `KnownState`): the meta its state was read with, and the
    state's size."""

    meta: SessionMeta  # id, epoch, version and layout of the cached state
    elements: int
    content: tuple[bytes, bytes, bytes]
    result: Any
    cost: int


def _content(state: State) -> tuple[bytes, bytes, bytes]:
    if not state.extremes.size:  # the usual case (only plugins keep extremes)
        return state.sums.tobytes(), b"", b""
    return state.sums.tobytes(), state.extremes.tobytes(), state.present.tobytes()


class ResultCache:
    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024,
                 max_state_elements: int = 65_536) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_state_elements = max_state_elements  # larger states are not kept
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        #: `known(name)`: the meta and size of the state whose result is cached for `name`
        #: (`Store.list`'s `known`: a cache entry is a KnownState, and nobody mutates a
        #: snapshot's meta). The dict's own `get`: a listing asks it a thousand times.
        self.known: Callable[[str], KnownState | None] = self._entries.get

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, meta: SessionMeta, state: State) -> Any:
        """The cached result of this session's state, or `MISS`."""
        entry = self._entries.get(meta.name)
        if entry is None:
            return MISS
        held = entry.meta
        if held.id != meta.id or held.epoch != meta.epoch or held.version != meta.version \
                or held.layout != meta.layout or state.elements > self.max_state_elements \
                or entry.content != _content(state):
            return MISS
        with self._lock:
            if meta.name in self._entries:
                self._entries.move_to_end(meta.name)
        return entry.result

    def put(self, meta: SessionMeta, state: State, result: Any) -> None:
        """Remember `result` as the result of this session's state (replacing the entry of
        its previous state); states above `max_state_elements` are not kept."""
        self.put_many([(meta, state, result)])

    def put_many(self, fresh: Iterable[tuple[SessionMeta, State, Any]]) -> None:
        """`put` for each (meta, state, result), under one lock: a cold listing stores a
        thousand results at once (~2.7 -> ~1 us each)."""
        limit = self.max_state_elements if self.max_entries > 0 else -1  # -1: keep none
        entries = []
        for meta, state, result in fresh:
            elements = state.elements
            if elements > limit:
                continue
            content = _content(state)
            cost = ENTRY_OVERHEAD + (1 + RESULT_FACTOR) * (
                len(content[0]) + len(content[1]) + len(content[2]))
            entries.append((meta.name, _Entry(meta, elements, content, result, cost)))
        if not entries:
            return
        with self._lock:
            held = self._entries
            for name, entry in entries:
                old = held.pop(name, None)
                if old is not None:
                    self._bytes -= old.cost
                held[name] = entry
                self._bytes += entry.cost
            while held and (len(held) > self.max_entries or self._bytes > self.max_bytes):
                _, evicted = held.popitem(last=False)
                self._bytes -= evicted.cost

    def get_unread(self, meta: SessionMeta) -> Any:
        """The result for a session the store did not read because its id and version were
        those of `meta` (from `known`): `MISS` if that entry was replaced or evicted since."""
        entry = self._entries.get(meta.name)
        if entry is None or entry.meta is not meta:
            return MISS
        with self._lock:
            if meta.name in self._entries:
                self._entries.move_to_end(meta.name)
        return entry.result

    def forget(self, name: str) -> None:
        with self._lock:
            old = self._entries.pop(name, None)
            if old is not None:
                self._bytes -= old.cost
