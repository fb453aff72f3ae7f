"""The Redis store: state in Redis or Redis Cluster, one Lua script per operation.

Every key of a session shares one hash tag (keys.py), so each script touches one slot and is
atomic, also under Cluster. Scripts live in `lua/`, one file each with a header naming its
KEYS, ARGV and return value. Every driver error becomes `StoreUnavailable` in `_guard`, the
one place where that translation happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.errors import StoreUnavailable, TallyError
from app.store import keys
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
)

T = TypeVar("T")
SCRIPTS = ("create", "apply", "read", "reset", "delete")


def _lua(name: str) -> str:
    return resources.files("app.store").joinpath(f"lua/{name}.lua").read_text()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _floats(flat: list[Any]) -> dict[str, float]:
    return {k: float(v) for k, v in _pairs(flat).items()}


def _meta_from(name: str, flat: list[Any]) -> SessionMeta:
    raw = _pairs(flat)
    return SessionMeta(
        name=name,
        metric=raw["metric"],
        args=orjson.loads(raw["args"]),
        config=orjson.loads(raw["config"]),
        epoch=int(raw["epoch"]),
        created_at=float(raw["created_at"]),
        ttl_seconds=int(raw["ttl"]) if raw.get("ttl") else None,
        id=raw.get("id", ""),
        layout=orjson.loads(raw["layout"]) if raw.get("layout") else None,
    )


def _flat(increments: dict[str, float]) -> list[str]:
    out: list[str] = []
    for key, value in increments.items():
        out += (key, repr(value))
    return out


def _encode_batch(batch: Batch) -> dict[str, Any]:
    encoded: dict[str, Any] = {"n": batch.samples}
    if batch.sums:
        encoded["s"] = _flat(batch.sums)
    if batch.maxes:
        encoded["x"] = _flat(batch.maxes)
    if batch.mins:
        encoded["m"] = _flat(batch.mins)
    if batch.epoch is not None:
        encoded["e"] = batch.epoch
    if batch.idempotency_key is not None:
        encoded["k"] = batch.idempotency_key
    if batch.session_id is not None:
        encoded["i"] = batch.session_id
    if batch.layout is not None:
        encoded["l"] = batch.layout
    return encoded


def _decode_answer(name: str, batch: Batch, answer: Any) -> Applied | TallyError:
    expected = batch.epoch
    kind, _, tail = _text(answer).partition(" ")
    rest = tail.split(" ")
    if kind == "L":
        return LayoutMismatch(name, tail, batch.layout or "")
    if kind == "S":
        return StaleSession(name)
    if kind == "E":
        return EpochMismatch(name, expected if expected is not None else -1, int(rest[0]))
    return Applied(int(rest[0]), int(rest[1]), replayed=kind == "R")


def _closed_from(entry: Any) -> ClosedEpoch:
    record = orjson.loads(entry)
    state = record["state"] if isinstance(record["state"], list) else []
    return ClosedEpoch(int(record["epoch"]), float(record["closed_at"]), _floats(state))


class RedisStore:
    def __init__(self, client: Any, history_limit: int = 1000,
                 idempotency_ttl: float = IDEMPOTENCY_TTL_SECONDS) -> None:
        self._client = client
        self._history_limit = history_limit
        self._idempotency_ms = int(idempotency_ttl * 1000)
        self._scripts = {name: client.register_script(_lua(name)) for name in SCRIPTS}

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, timeout: float = 5.0,
                 **kwargs: Any) -> RedisStore:
        # No automatic retries: re-sending an update whose answer was lost could count it
        # twice. Clients retry with an Idempotency-Key instead, which is always safe.
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        client: Any
        if cluster:
            client = RedisCluster.from_url(url, **options)
        else:
            client = aioredis.Redis.from_url(url, health_check_interval=15, **options)
        return cls(client, **kwargs)

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except rexc.ResponseError as exc:
            if "BUSY" in str(exc) or "LOADING" in str(exc) or "CLUSTERDOWN" in str(exc):
                raise StoreUnavailable(f"Redis is not ready: {exc}") from exc
            raise
        except (rexc.RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"the store is unreachable: {type(exc).__name__}: {exc}")\
                from exc

    async def _run(self, script: str, name: str, args: list[Any] | None = None,
                   key_list: list[str] | None = None) -> Any:
        async with self._guard():
            return await self._scripts[script](keys=key_list or keys.session_keys(name),
                                               args=args or [])

    async def _call(self, awaitable: Awaitable[T]) -> T:
        async with self._guard():
            return await awaitable

    # -- the protocol ------------------------------------------------------------------
    async def create(self, meta: SessionMeta) -> tuple[SessionMeta, bool]:
        existing = await self._run("create", meta.name, [
            meta.metric, orjson.dumps(meta.args), orjson.dumps(meta.config),
            repr(meta.created_at), "" if meta.ttl_seconds is None else str(meta.ttl_seconds),
            meta.id,
        ])
        if existing:
            return _meta_from(meta.name, existing), False
        await self._call(self._client.zadd(keys.INDEX, {meta.name: 0}))
        return meta, True

    async def get_meta(self, name: str) -> SessionMeta | None:
        flat = await self._call(self._client.hgetall(keys.meta(name)))
        if not flat:
            return None
        return _meta_from(name, [x for kv in flat.items() for x in kv])

    async def apply(self, name: str, batches: list[Batch]) -> list[Applied | TallyError]:
        payload = orjson.dumps([_encode_batch(b) for b in batches])
        answers = await self._run("apply", name, [payload, self._idempotency_ms])
        if answers and _text(answers[0]) == "missing":
            return [SessionNotFound(name) for _ in batches]
        return [_decode_answer(name, b, a) for b, a in zip(batches, answers, strict=True)]

    async def read(self, name: str) -> Snapshot | None:
        found = await self._run("read", name, key_list=[keys.meta(name), keys.state(name)])
        if not found:
            return None
        return Snapshot(_meta_from(name, found[0]), _floats(found[1]))

    async def reset(self, name: str, expected_epoch: int | None = None
                    ) -> tuple[ClosedEpoch, SessionMeta]:
        out = await self._run("reset", name, [
            "" if expected_epoch is None else str(expected_epoch), self._history_limit,
        ])
        kind = _text(out[0])
        if kind == "missing":
            raise SessionNotFound(name)
        if kind == "E":
            raise EpochMismatch(name, expected_epoch or 0, int(out[1]))
        return ClosedEpoch(int(out[1]), float(out[2]), _floats(out[3])), _meta_from(name, out[4])

    async def history(self, name: str) -> list[ClosedEpoch] | None:
        if await self.get_meta(name) is None:
            return None
        entries = await self._call(self._client.lrange(keys.history(name), 0, -1))
        return [_closed_from(e) for e in entries]

    async def delete(self, name: str) -> bool:
        existed = await self._run("delete", name)
        await self._call(self._client.zrem(keys.INDEX, name))
        return bool(existed)

    async def list(self, prefix: str = "") -> list[Snapshot]:
        low = "[" + prefix if prefix else "-"
        high = "[" + prefix + "\U0010ffff" if prefix else "+"
        names = [_text(n) for n in await self._call(
            self._client.zrangebylex(keys.INDEX, low, high))]
        snapshots = await asyncio.gather(*(self.read(name) for name in names))
        out = [s for s in snapshots if s is not None]
        gone = [n for n, s in zip(names, snapshots, strict=True) if s is None]  # TTL-expired
        if gone:
            await self._call(self._client.zrem(keys.INDEX, *gone))
        return out

    async def ping(self) -> None:
        await self._call(self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()
