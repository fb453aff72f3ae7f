"""The embedded store: every session in this process's memory.

The default when no Redis is configured, so `make run` works with nothing else installed.
Each operation runs without awaiting, so on one event loop it is atomic by construction.
It is one process only: several uvicorn workers would each have their own numbers.
"""

from __future__ import annotations

import copy
import json
import math
import time
from bisect import bisect_left
from dataclasses import dataclass, field

from app.errors import TallyError
from app.store.base import (
    IDEMPOTENCY_TTL_SECONDS,
    Applied,
    Batch,
    ClosedEpoch,
    EpochMismatch,
    LayoutMismatch,
    SessionMeta,
    SessionNotFound,
    Snapshot,
    StaleSession,
    canonical_layout,
)


@dataclass
class _Session:
    meta: SessionMeta
    state: dict[str, float] = field(default_factory=dict)
    history: list[ClosedEpoch] = field(default_factory=list)
    # idempotency key -> (first answer, expiry in monotonic time)
    answers: dict[str, tuple[Applied, float]] = field(default_factory=dict)
    expires_at: float | None = None  # monotonic time


def _add(state: dict[str, float], key: str, value: float) -> None:
    state[key] = state.get(key, 0.0) + value


def _apply_increments(state: dict[str, float], batch: Batch) -> None:
    for key, value in batch.sums.items():
        _add(state, key, value)
    for key, value in batch.maxes.items():
        current = state.get(key)
        if current is None or value > current or math.isnan(value):
            state[key] = value
    for key, value in batch.mins.items():
        current = state.get(key)
        if current is None or value < current or math.isnan(value):
            state[key] = value


class MemoryStore:
    def __init__(self, history_limit: int = 1000,
                 idempotency_ttl: float = IDEMPOTENCY_TTL_SECONDS) -> None:
        self._sessions: dict[str, _Session] = {}
        self._history_limit = history_limit
        self._idempotency_ttl = idempotency_ttl

    # -- helpers -----------------------------------------------------------------------
    def _live(self, name: str) -> _Session | None:
        session = self._sessions.get(name)
        if session is not None and session.expires_at is not None \
                and time.monotonic() >= session.expires_at:
            del self._sessions[name]
            return None
        return session

    def _touch(self, session: _Session) -> None:
        ttl = session.meta.ttl_seconds
        if ttl:
            session.expires_at = time.monotonic() + ttl

    def _require(self, name: str) -> _Session:
        session = self._live(name)
        if session is None:
            raise SessionNotFound(name)
        return session

    # -- the protocol ------------------------------------------------------------------
    async def create(self, meta: SessionMeta) -> tuple[SessionMeta, bool]:
        existing = self._live(meta.name)
        if existing is not None:
            return copy.deepcopy(existing.meta), False
        session = _Session(meta=copy.deepcopy(meta))
        self._touch(session)
        self._sessions[meta.name] = session
        return copy.deepcopy(meta), True

    async def get_meta(self, name: str) -> SessionMeta | None:
        session = self._live(name)
        return None if session is None else copy.deepcopy(session.meta)

    async def apply(self, name: str, batches: list[Batch]) -> list[Applied | TallyError]:
        session = self._live(name)
        if session is None:
            return [SessionNotFound(name) for _ in batches]
        now = time.monotonic()
        session.answers = {k: v for k, v in session.answers.items() if v[1] > now}
        out: list[Applied | TallyError] = []
        epoch = session.meta.epoch
        for batch in batches:
            key = batch.idempotency_key
            if key is not None and key in session.answers:
                first = session.answers[key][0]
                out.append(Applied(first.epoch, first.samples, replayed=True))
            elif batch.session_id is not None and batch.session_id != session.meta.id:
                out.append(StaleSession(name))
            elif batch.epoch is not None and batch.epoch != epoch:
                out.append(EpochMismatch(name, batch.epoch, epoch))
            elif batch.layout is not None and session.meta.layout is not None \
                    and batch.layout != (current := canonical_layout(session.meta.layout)):
                out.append(LayoutMismatch(name, current, batch.layout))
            else:
                if batch.layout is not None and session.meta.layout is None:
                    session.meta.layout = json.loads(batch.layout)
                _apply_increments(session.state, batch)
                answer = Applied(epoch, batch.samples)
                if key is not None:
                    session.answers[key] = (answer, now + self._idempotency_ttl)
                out.append(answer)
        self._touch(session)
        return out

    async def read(self, name: str) -> Snapshot | None:
        session = self._live(name)
        if session is None:
            return None
        return Snapshot(copy.deepcopy(session.meta), dict(session.state))

    async def reset(self, name: str, expected_epoch: int | None = None
                    ) -> tuple[ClosedEpoch, SessionMeta]:
        session = self._require(name)
        epoch = session.meta.epoch
        if expected_epoch is not None and expected_epoch != epoch:
            raise EpochMismatch(name, expected_epoch, epoch)
        closed = ClosedEpoch(epoch, time.time(), session.state)
        session.history.append(closed)
        del session.history[:-self._history_limit]
        session.state = {}
        session.meta.epoch = epoch + 1
        self._touch(session)
        return copy.deepcopy(closed), copy.deepcopy(session.meta)

    async def history(self, name: str) -> list[ClosedEpoch] | None:
        session = self._live(name)
        return None if session is None else copy.deepcopy(session.history)

    async def delete(self, name: str) -> bool:
        return self._live(name) is not None and self._sessions.pop(name, None) is not None

    async def list(self, prefix: str = "") -> list[Snapshot]:
        names = sorted(self._sessions)
        start = bisect_left(names, prefix)
        out = []
        for name in names[start:]:
            if not name.startswith(prefix):
                break
            snapshot = await self.read(name)
            if snapshot is not None:
                out.append(snapshot)
        return out

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
