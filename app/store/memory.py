"""The embedded store: every session in this process's memory.

The default when no Redis is configured, so `make run` works with nothing else installed.
Each operation runs without awaiting, so on one event loop it is atomic by construction.
It is one process only: several uvicorn workers would each have their own numbers (the
service refuses to start that way).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from app.errors import TallyError
from app.store.base import (
    IDEMPOTENCY_KEYS_PER_SESSION,
    IDEMPOTENCY_TTL_SECONDS,
    Applied,
    Batch,
    Clock,
    ClosedEpoch,
    EpochMismatch,
    KeyBoundElsewhere,
    Known,
    LayoutMismatch,
    MergedKeySeen,
    Page,
    SessionMeta,
    SessionNotFound,
    SliceRuns,
    Slices,
    Snapshot,
    StaleSession,
    TooManySlices,
    canonical_layout,
)
from app.store.state import State


@dataclass
class _Answer:
    applied: Applied
    fingerprint: str
    expires: float  # monotonic time


@dataclass
class _Session:
    meta: SessionMeta
    state: State = field(default_factory=State)
    history: list[ClosedEpoch] = field(default_factory=list)
    answers: OrderedDict[str, _Answer] = field(default_factory=OrderedDict)  # oldest first
    expires_at: float | None = None  # monotonic time
    buckets: dict[int, _Bucket] = field(default_factory=dict)  # window bucket index -> it
    slices: dict[str, State] = field(default_factory=dict)  # the epoch's slice value -> state


@dataclass
class _Bucket:
    """A window bucket: its sums, and a sliced session's slices' sums."""

    state: State = field(default_factory=State)
    slices: dict[str, State] = field(default_factory=dict)


def _copy(meta: SessionMeta) -> SessionMeta:
    """A caller's own copy of a meta. Shallow: nobody mutates a meta's dicts in place (the
    service only rebinds `layout` on its copy), and a deep copy costs a fifth of a read."""
    return dataclasses.replace(meta)


def _apply_increments(state: State, batch: Batch | SliceRuns) -> None:
    state.add(batch.sums)
    state.extreme(batch.maxes, "max")
    state.extreme(batch.mins, "min")


def _past_limit(name: str, held: dict[str, State], batch: Batch, limit: int,
                in_bucket: bool = False) -> TooManySlices | None:
    """The refusal of a batch whose new slice values would take `held` past `limit`."""
    new = [part.value for part in batch.slices if part.value not in held]
    if new and len(held) + len(new) > limit:
        return TooManySlices(name, limit, len(held), new, in_bucket)
    return None


class MemoryStore:
    def __init__(self, history_limit: int = 1000,
                 idempotency_ttl: float = IDEMPOTENCY_TTL_SECONDS,
                 idempotency_keys: int = IDEMPOTENCY_KEYS_PER_SESSION,
                 clock: Clock = time.time) -> None:
        self.clock = clock  # Unix seconds, for the window buckets
        self._sessions: dict[str, _Session] = {}
        self._names: list[str] = []  # sorted, for listing pages in O(log n + page)
        self._history_limit = history_limit
        self._idempotency_ttl = idempotency_ttl
        self._idempotency_keys = idempotency_keys

    # -- helpers -----------------------------------------------------------------------
    def _live(self, name: str) -> _Session | None:
        session = self._sessions.get(name)
        if session is not None and session.expires_at is not None \
                and time.monotonic() >= session.expires_at:
            self._drop(name)
            return None
        return session

    def _drop(self, name: str) -> None:
        del self._sessions[name]
        i = bisect_left(self._names, name)
        if i < len(self._names) and self._names[i] == name:
            del self._names[i]

    def _touch(self, session: _Session) -> None:
        ttl = session.meta.ttl_seconds
        if ttl:
            session.expires_at = time.monotonic() + ttl

    def _require(self, name: str) -> _Session:
        session = self._live(name)
        if session is None:
            raise SessionNotFound(name)
        return session

    def _forget_old_answers(self, session: _Session, now: float) -> None:
        answers = session.answers
        while answers:
            oldest = next(iter(answers.values()))
            if oldest.expires > now and len(answers) <= self._idempotency_keys:
                break
            answers.popitem(last=False)

    # -- the protocol ------------------------------------------------------------------
    async def create(self, meta: SessionMeta) -> tuple[SessionMeta, bool]:
        existing = self._live(meta.name)
        if existing is not None:
            return _copy(existing.meta), False
        session = _Session(meta=copy.deepcopy(meta))
        self._touch(session)
        self._sessions[meta.name] = session
        self._names.insert(bisect_left(self._names, meta.name), meta.name)
        return copy.deepcopy(meta), True

    async def get_meta(self, name: str) -> SessionMeta | None:
        session = self._live(name)
        return None if session is None else _copy(session.meta)

    async def apply(self, name: str, batches: list[Batch]) -> list[Applied | TallyError]:
        session = self._live(name)
        if session is None:
            return [SessionNotFound(name) for _ in batches]
        now = time.monotonic()
        bucket = self._current_bucket(session)
        out: list[Applied | TallyError] = []
        for batch in batches:
            out.append(self._apply_one(session, batch, now, bucket))
            self._forget_old_answers(session, now)
        self._touch(session)
        return out

    def _current_bucket(self, session: _Session) -> _Bucket | None:
        """The session's current window bucket (None without a window), after dropping the
        buckets no window can reach any more."""
        window = session.meta.window
        if window is None:
            return None
        index = window.bucket_at(self.clock())
        for old in [i for i in session.buckets if i <= index - window.buckets]:
            del session.buckets[old]
        return session.buckets.setdefault(index, _Bucket())

    def _apply_one(self, session: _Session, batch: Batch, now: float,
                   bucket: _Bucket | None) -> Applied | TallyError:
        name, meta, key = session.meta.name, session.meta, batch.idempotency_key
        if batch.joined and self._any_answered(session, batch, now):
            return MergedKeySeen(name)
        prior = session.answers.get(key) if key is not None else None
        if prior is not None and prior.expires > now:
            if prior.fingerprint != batch.fingerprint:
                return KeyBoundElsewhere(name, key or "")
            return Applied(prior.applied.epoch, prior.applied.samples, replayed=True)
        if batch.session_id is not None and batch.session_id != meta.id:
            return StaleSession(name)
        if batch.epoch is not None and batch.epoch != meta.epoch:
            return EpochMismatch(name, batch.epoch, meta.epoch)
        if batch.layout is not None and meta.layout is not None \
                and batch.layout != (current := canonical_layout(meta.layout)):
            return LayoutMismatch(name, current, batch.layout)
        refused = _past_limit(name, session.slices, batch, meta.slices or 0)
        if refused is None and bucket is not None:
            refused = _past_limit(name, bucket.slices, batch, meta.slices or 0, in_bucket=True)
        if refused is not None:
            return refused
        if batch.layout is not None and meta.layout is None:
            meta.layout = json.loads(batch.layout)
        _apply_increments(session.state, batch)
        for part in batch.slices:
            _apply_increments(session.slices.setdefault(part.value, State()), part)
        meta.version += 1  # as apply.lua bumps `v`: the result cache's key changes
        if bucket is not None:
            _apply_increments(bucket.state, batch)
            for part in batch.slices:
                _apply_increments(bucket.slices.setdefault(part.value, State()), part)
        answer = Applied(meta.epoch, batch.samples)
        self._remember(session, key, batch.fingerprint, answer, now)
        for other in batch.joined:
            self._remember(session, other.idempotency_key, other.fingerprint,
                           Applied(meta.epoch, other.samples), now)
        return answer

    @staticmethod
    def _any_answered(session: _Session, batch: Batch, now: float) -> bool:
        keys = [batch.idempotency_key, *(j.idempotency_key for j in batch.joined)]
        return any((prior := session.answers.get(k)) is not None and prior.expires > now
                   for k in keys if k is not None)

    def _remember(self, session: _Session, key: str | None, fingerprint: str,
                  answer: Applied, now: float) -> None:
        if key is not None:
            session.answers.pop(key, None)
            session.answers[key] = _Answer(answer, fingerprint, now + self._idempotency_ttl)

    async def read(self, name: str) -> Snapshot | None:
        session = self._live(name)
        if session is None:
            return None
        return Snapshot(_copy(session.meta), session.state.copy())

    async def read_window(self, name: str, buckets: int) -> Snapshot | None:
        session = self._live(name)
        if session is None:
            return None
        window = session.meta.window
        total = State()
        if window is not None:
            last = window.bucket_at(self.clock())
            for index in range(last - buckets + 1, last + 1):
                if index in session.buckets:
                    total.add_sums(session.buckets[index].state)
        return Snapshot(_copy(session.meta), total)

    async def read_window_slices(self, name: str, buckets: int, value: str | None = None
                                 ) -> Slices | None:
        session = self._live(name)
        if session is None:
            return None
        window = session.meta.window
        total: dict[str, State] = {}
        if window is not None:
            last = window.bucket_at(self.clock())
            for index in range(last - buckets + 1, last + 1):
                held = session.buckets[index].slices if index in session.buckets else {}
                for slice_value, state in held.items():
                    if value is None or slice_value == value:
                        total.setdefault(slice_value, State()).add_sums(state)
        return Slices(_copy(session.meta), total)

    async def read_slices(self, name: str, value: str | None = None) -> Slices | None:
        session = self._live(name)
        if session is None:
            return None
        chosen = session.slices if value is None else \
            {value: session.slices[value]} if value in session.slices else {}
        return Slices(_copy(session.meta), {k: v.copy() for k, v in chosen.items()})

    async def reset(self, name: str, expected_epoch: int | None = None
                    ) -> tuple[ClosedEpoch, SessionMeta]:
        session = self._require(name)
        epoch = session.meta.epoch
        if expected_epoch is not None and expected_epoch != epoch:
            raise EpochMismatch(name, expected_epoch, epoch)
        closed = ClosedEpoch(epoch, time.time(), state=session.state,
                             slices=session.slices if session.meta.slices else None)
        session.history.append(closed)
        del session.history[:-self._history_limit]
        session.state, session.slices = State(), {}
        session.meta.epoch = epoch + 1
        session.meta.version += 1  # as reset.lua bumps `v`
        self._touch(session)
        return copy.deepcopy(closed), _copy(session.meta)

    async def compact(self, name: str, epoch: int, result: bytes,
                      slices: bytes | None = None) -> None:
        session = self._live(name)
        for closed in session.history if session is not None else []:
            if closed.epoch == epoch and not closed.compacted:
                closed.state, closed.result, closed.compacted = None, orjson.loads(result), True
                if slices is not None:
                    closed.slices, closed.slice_results = None, orjson.loads(slices)

    async def history(self, name: str) -> list[ClosedEpoch] | None:
        session = self._live(name)
        return None if session is None else copy.deepcopy(session.history)

    async def delete(self, name: str) -> bool:
        if self._live(name) is None:
            return False
        self._drop(name)
        return True

    async def list(self, prefix: str = "", after: str | None = None, limit: int = 100,
                   max_elements: int | None = None, known: Known | None = None) -> Page:
        # `known` is not needed here: reading a session in memory costs less than checking.
        start = bisect_right(self._names, after) if after is not None and after >= prefix \
            else bisect_left(self._names, prefix)
        out: list[Snapshot] = []
        elements, i = 0, start
        while i < len(self._names) and len(out) < limit:
            name = self._names[i]
            if not name.startswith(prefix):
                return Page(out, None)
            snapshot = await self.read(name)
            if snapshot is None:  # expired just now; `_live` removed it from `_names`
                continue
            elements += snapshot.state.elements
            if out and max_elements is not None and elements > max_elements:
                return Page(out, out[-1].meta.name)
            out.append(snapshot)
            i += 1
        more = i < len(self._names) and self._names[i].startswith(prefix)
        return Page(out, out[-1].meta.name if more and out else None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
