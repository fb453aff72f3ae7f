"""The Redis store: state in Redis or Redis Cluster, one Lua script per operation.

Every key of a session shares one hash tag (keys.py), so each script touches one slot and is
atomic, also under Cluster. Scripts live in `lua/`, one file each with a header naming its
KEYS, ARGV and return value. A state is two packed strings (store/state.py): an update writes
only the ranges it touched, a read is one reply that numpy parses without a loop.

Every driver error is translated in `_guard`, the one place where that happens, into what the
client may conclude: `StoreUnavailable` (503, nothing was applied), `OutcomeUnknown` (504,
a write was sent but its answer was lost: it may have been applied) or `StoreFull` (507).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import struct
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

import hiredis
import numpy as np
import orjson
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.errors import OutcomeUnknown, StoreFull, StoreUnavailable, TallyError
from app.store import keys
from app.store.base import (
    IDEMPOTENCY_KEYS_PER_SESSION,
    IDEMPOTENCY_TTL_SECONDS,
    UNREAD,
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
    Window,
)
from app.store.state import Runs, State, state_from

T = TypeVar("T")
SCRIPTS = ("create", "apply", "read", "read_many", "read_window", "read_slices", "reset",
           "compact", "history", "delete")
#: A run as apply.lua reads it: target 0 is the session's state, t >= 1 the batch's slice t.
RUN = np.dtype([("kind", "u1"), ("target", "<u4"), ("start", "<u4"), ("count", "<u4")])
RUN_HEAD = struct.Struct("<BIII")  # one RUN, packed the same way
#: A batch whose runs cover more elements than this is added in numpy and written back whole
#: (`_apply_whole`): the apply script's Lua loop costs Redis ~1 µs per element, and Redis runs
#: one script at a time, so a million-element batch would stall every other client for seconds.
WHOLE_STATE_ELEMENTS = 131_072
WHOLE_STATE_ATTEMPTS = 3
KINDS = {"sums": 0, "maxes": 1, "mins": 2}
LIST_CONCURRENCY = 16  # sessions read at once while listing (the pool must not run dry)
NOT_READY = ("BUSY", "LOADING", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN", "READONLY")


def _lua(name: str) -> str:
    return resources.files("app.store").joinpath(f"lua/{name}.lua").read_text()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


#: The meta fields a SessionMeta is built from, in the order read_many.lua returns them.
META_FIELDS = ("metric", "args", "config", "epoch", "created_at", "ttl", "id", "layout", "wb",
               "wk", "v", "sm")


def _meta_from(name: str, flat: list[Any] | dict[Any, Any]) -> SessionMeta:
    """A meta from its hash (HGETALL, flat or as a dict)."""
    pairs = flat.items() if isinstance(flat, dict) else zip(flat[::2], flat[1::2],
                                                            strict=True)
    return _meta_of(name, {_text(k): v for k, v in pairs})


def _meta_of(name: str, raw: dict[str, Any]) -> SessionMeta:
    """A meta from its fields by name (missing ones None or absent). Values stay bytes where
    int(), float() and orjson take them as they are: a listing parses a thousand of these."""
    ttl, layout, wb = raw.get("ttl"), raw.get("layout"), raw.get("wb")
    return SessionMeta(
        name=name,
        metric=_text(raw["metric"]),
        args=orjson.loads(raw["args"]),
        config=orjson.loads(raw["config"]),
        epoch=int(raw["epoch"]),
        created_at=float(raw["created_at"]),
        ttl_seconds=int(ttl) if ttl else None,
        id=_text(raw.get("id", "")),
        layout=orjson.loads(layout) if layout else None,
        window=Window(int(wb), int(raw["wk"])) if wb else None,
        slices=int(raw["sm"]) if raw.get("sm") else None,
        version=int(raw.get("v") or 0),
    )


#: read_many's answers for a session whose state moved since the caller's meta: its `ver`
#: and sums, or with extremes and layout too (its other meta fields are the caller's).
MOVED_ENTRY, MOVED_ENTRY_WHOLE = 2, 4


def _moved(known: SessionMeta, entry: list[bytes]) -> Snapshot:
    """A known session's snapshot from read_many's answer for it when its state moved."""
    _, version, epoch, _ = entry[0].split(b" ")
    if len(entry) == MOVED_ENTRY:
        return Snapshot(_meta_moved(known, epoch, version, b""), state_from(entry[1], b""))
    _, sums, extremes, layout = entry
    return Snapshot(_meta_moved(known, epoch, version, layout), state_from(sums, extremes))


def _meta_moved(known: SessionMeta, epoch: bytes, version: bytes, layout: bytes
                ) -> SessionMeta:
    """The caller's meta of this incarnation with what writes and resets move: the epoch, the
    state version and a lazy metric's layout. Everything else is fixed at create, so a cold
    listing parses no JSON for it (3.0 -> ~1 us a session). The fields go positionally, in
    SessionMeta's order (keywords cost twice as much: 0.7 against 0.3 us, and a cold listing
    makes a thousand)."""
    return SessionMeta(known.name, known.metric, known.args, known.config, int(epoch),
                       known.created_at, known.ttl_seconds, known.id,
                       orjson.loads(layout) if layout else None, known.window, known.slices,
                       int(version))


def _encode_runs(batch: Batch) -> tuple[bytes, bytes, int]:
    """A batch's runs as the apply script reads them: packed headers, packed values."""
    if len(batch.sums) == 1 and not len(batch.maxes) and not len(batch.mins) \
            and not batch.slices:
        # The small-batch hot path (one run of sums, engine.py): 1 us instead of 5.
        runs = batch.sums
        head = RUN_HEAD.pack(KINDS["sums"], 0, int(runs.starts[0]), int(runs.counts[0]))
        return head, runs.values.astype("<f8", copy=False).tobytes(), 1
    parts = [(KINDS[kind], 0, getattr(batch, kind)) for kind in KINDS]
    parts += [(KINDS[kind], target, getattr(part, kind))
              for target, part in enumerate(batch.slices, 1) for kind in KINDS]
    heads = np.zeros(sum(len(r) for _, _, r in parts), RUN)
    at = 0
    for kind, target, runs in parts:
        n = len(runs)
        heads["kind"][at:at + n], heads["start"][at:at + n] = kind, runs.starts
        heads["target"][at:at + n], heads["count"][at:at + n] = target, runs.counts
        at += n
    values = np.concatenate([r.values for _, _, r in parts]).astype("<f8")
    return heads.tobytes(), values.tobytes(), len(heads)


#: How read_many.lua composes a session's meta, state, ext and ver keys from its name.
PAGE_KEY_AFFIXES = [part for key_of in (keys.meta, keys.state, keys.extremes, keys.version)
                    for part in keys.around_name(key_of)]


def _header(batch: Batch, runs: int, whole_version: int | None = None) -> dict[str, Any]:
    """A batch's header as the apply script reads it (see apply.lua)."""
    header: dict[str, Any] = {"n": batch.samples, "r": runs}
    optional = {"e": batch.epoch, "k": batch.idempotency_key, "i": batch.session_id,
                "l": batch.layout, "f": batch.fingerprint or None, "w": whole_version}
    header.update({k: v for k, v in optional.items() if v is not None})
    if batch.slices:
        header["s"], header["z"] = [part.value for part in batch.slices], list(batch.stride)
    if batch.joined:
        header["j"] = [[j.idempotency_key or "", j.fingerprint, j.samples] for j in batch.joined]
    return header


def _encode_batches(batches: list[Batch]) -> tuple[bytes, list[bytes]]:
    """The headers (JSON) and the runs and values of each batch, as apply.lua reads them."""
    headers: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for batch in batches:
        runs, values, count = _encode_runs(batch)
        headers.append(_header(batch, count))
        blobs += (runs, values)
    return orjson.dumps(headers), blobs


def _summed(buckets: list[bytes]) -> State:
    """The sum of window buckets' packed sums (numpy; a missing tail reads as zeros)."""
    parts = [np.frombuffer(b, "<f8", count=len(b) // 8) for b in buckets]
    total = np.zeros(max((p.size for p in parts), default=0))
    for part in parts:
        total[:part.size] += part
    return State(total)


def _added(stored: bytes, runs: Runs) -> bytes:
    """The packed sums after adding `runs` (numpy, off the event loop)."""
    old = np.frombuffer(stored, "<f8", count=len(stored) // 8)
    index = runs.indices()
    new = np.zeros(max(old.size, int(index.max()) + 1))
    new[:old.size] = old
    new[index] += runs.values
    return new.astype("<f8").tobytes()


def _slice_states(slots: dict[str, str], sums: bytes, extremes: bytes,
                  stride: tuple[int, int]) -> dict[str, State]:
    """Each slice's state from the slices' strings: slot k at k x stride (numpy views)."""
    every = state_from(sums, extremes)
    size, ext = stride
    out = {}
    for value, k in sorted(((v, int(slot)) for v, slot in slots.items()),
                           key=lambda pair: pair[1]):  # in order of arrival
        out[value] = State(every.sums[k * size:(k + 1) * size],
                           every.extremes[k * ext:(k + 1) * ext],
                           every.present[k * ext:(k + 1) * ext])
    return out


def _summed_slices(buckets: list[tuple[dict[str, str], bytes]], stride: tuple[int, int]
                   ) -> dict[str, State]:
    """Each slice's sums added over the buckets (their own slots each), in order of first
    appearance, oldest bucket first."""
    total: dict[str, State] = {}
    for slots, sums in buckets:
        for value, state in _slice_states(slots, sums, b"", stride).items():
            total.setdefault(value, State()).add_sums(state)
    return total


def _stride(meta: dict[str, str]) -> tuple[int, int]:
    return int(meta.get("ss") or 0), int(meta.get("se") or 0)


def _window_args(window: Window | None) -> list[str]:
    """create.lua's window arguments: bucket seconds and buckets, or '' for none."""
    if window is None:
        return ["", ""]
    return [str(window.bucket_seconds), str(window.buckets)]


def _decode_answer(name: str, batch: Batch, answer: Any) -> Applied | TallyError:
    kind, _, tail = _text(answer).partition(" ")
    rest = tail.split(" ")
    if kind == "L":
        return LayoutMismatch(name, tail, batch.layout or "")
    if kind == "S":
        return StaleSession(name)
    if kind == "K":
        return KeyBoundElsewhere(name, batch.idempotency_key or "")
    if kind == "J":
        return MergedKeySeen(name)
    if kind == "E":
        expected = batch.epoch if batch.epoch is not None else -1
        return EpochMismatch(name, expected, int(rest[0]))
    if kind in ("M", "B"):
        new = [batch.slices[int(j) - 1].value for j in rest[2].split(",")]
        return TooManySlices(name, int(rest[0]), int(rest[1]), new, in_bucket=kind == "B")
    return Applied(int(rest[0]), int(rest[1]), replayed=kind == "R")


def _closed_from(epoch: int, entry: bytes) -> ClosedEpoch:
    """A history entry (see reset.lua): raw state, or its compacted result; a sliced
    session's with its slices'."""
    head, _, body = entry.partition(b"\n")
    closed_at, kind = float(head[1:]), head[:1]
    if kind == b"R":
        return ClosedEpoch(epoch, closed_at, result=orjson.loads(body), compacted=True)
    if kind == b"Q":
        both = orjson.loads(body)
        return ClosedEpoch(epoch, closed_at, result=both["result"], compacted=True,
                           slice_results=both["slices"])
    if kind == b"T":
        sums, ext, slots, slice_sums, *stride = struct.unpack_from("<6I", body)
        at = struct.calcsize("<6I")
        parts = []
        for size in (sums, ext, slots, slice_sums):
            parts.append(body[at:at + size])
            at += size
        slot_of = {value: str(k) for value, k in orjson.loads(parts[2]).items()}
        return ClosedEpoch(epoch, closed_at, state=state_from(parts[0], parts[1]),
                           slices=_slice_states(slot_of, parts[3], body[at:],
                                                (stride[0], stride[1])))
    size = int.from_bytes(body[:4], "little")
    return ClosedEpoch(epoch, closed_at, state=state_from(body[4:4 + size], body[4 + size:]))


def _worth_whole(batch: Batch) -> bool:
    """A large batch of sums only (extremes, a plugin's, always travel as runs), its slices'
    counted in."""
    parts: list[Batch | SliceRuns] = [batch, *batch.slices]
    return sum(part.sums.size for part in parts) > WHOLE_STATE_ELEMENTS \
        and not any(len(part.maxes) or len(part.mins) for part in parts)


def _added_slices(stored: bytes, batch: Batch, slots: dict[str, int]) -> bytes:
    """The slices' packed sums after adding each slice's runs at its slot's offset."""
    old = np.frombuffer(stored, "<f8", count=len(stored) // 8)
    stride = batch.stride[0]
    size = max([old.size] + [(slots[part.value] + 1) * stride for part in batch.slices])
    new = np.zeros(size)
    new[:old.size] = old
    for part in batch.slices:
        new[slots[part.value] * stride + part.sums.indices()] += part.sums.values
    return new.astype("<f8").tobytes()


#: The longest a group-commit run keeps a pooled connection before giving it back (and
#: taking one again): a busy session's run would otherwise hold it for as long as it stays busy.
HOLD_SECONDS = 0.01


def _settle(waiting: list[tuple[Batch, asyncio.Future[Applied | TallyError]]],
            exc: Exception) -> None:
    """`exc` is the answer of every waiting batch not answered yet."""
    for _, future in waiting:
        if not future.done():
            future.set_exception(exc)


def _never_sent(exc: BaseException) -> bool:
    """Connection errors raised before a command left this process (connect failed, pool
    exhausted): the store cannot have applied anything."""
    text = str(exc)
    return isinstance(exc, rexc.MaxConnectionsError | rexc.RedisClusterException) \
        or "connecting to" in text or "Connection refused" in text \
        or "No connection available" in text


class RedisStore:
    def __init__(self, client: Any, history_limit: int = 1000,
                 idempotency_ttl: float = IDEMPOTENCY_TTL_SECONDS,
                 idempotency_keys: int = IDEMPOTENCY_KEYS_PER_SESSION,
                 replica_acks: int = 0, replica_timeout: float = 1.0,
                 group_commit: int = 64, clock: Clock = time.time) -> None:
        self._client = client
        self.clock = clock  # Unix seconds, for the window buckets (apply.lua takes it as ARGV)
        self._group_limit = group_commit  # batches per script call; 1 = no grouping
        self._groups: dict[str, list[tuple[Batch, asyncio.Future[Applied | TallyError]]]] = {}
        self._committers: set[asyncio.Task[None]] = set()
        self._readers: dict[str, list[asyncio.Future[Snapshot | None]]] = {}
        self._replica_acks = replica_acks
        self._replica_timeout_ms = int(replica_timeout * 1000)
        self._sources = {name: _lua(name) for name in SCRIPTS}
        self._history_limit = history_limit
        self._idempotency_ms = int(idempotency_ttl * 1000)
        self._idempotency_keys = idempotency_keys
        self._scripts = {name: client.register_script(_lua(name)) for name in SCRIPTS}
        #: Group commit sends on a connection of its own (a single Redis, no replica acks).
        self._direct = not isinstance(client, RedisCluster) and not replica_acks

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, timeout: float = 5.0,
                 max_connections: int = 100, **kwargs: Any) -> RedisStore:
        # No automatic retries: re-sending an update whose answer was lost could count it
        # twice. Clients retry with an Idempotency-Key instead, which is always safe.
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        if "replica_timeout" in kwargs:  # WAIT must give up before the socket does
            kwargs["replica_timeout"] = min(kwargs["replica_timeout"], timeout / 2)
        client: Any
        if cluster:
            client = RedisCluster.from_url(url, max_connections=max_connections, **options)
        else:
            # A blocking pool: past `max_connections` a request waits (up to the timeout) for
            # a connection instead of failing, so a burst queues rather than answering 503s.
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=timeout,
                health_check_interval=15, **options)
            client = aioredis.Redis(connection_pool=pool)
        return cls(client, **kwargs)

    @asynccontextmanager
    async def _guard(self, writes: bool = False) -> AsyncIterator[None]:
        """Translate driver errors. `writes`: the command may change state, so a lost answer
        means the outcome is unknown (504), not that nothing happened (503)."""
        try:
            yield
        except rexc.OutOfMemoryError as exc:
            raise StoreFull(f"the store is out of memory; nothing was applied: {exc}") from exc
        except rexc.AskError as exc:  # MOVED / ASK: a cluster node used as a plain Redis
            raise StoreUnavailable(
                "the Redis server is a Redis Cluster node but TALLY_REDIS_CLUSTER is not "
                f"true; nothing was applied ({exc})") from exc
        except rexc.ResponseError as exc:
            text = str(exc)
            if text.startswith("OOM") or "OOM command not allowed" in text:
                raise StoreFull(f"the store is out of memory; nothing was applied: {exc}")\
                    from exc
            if text.split(" ")[0] in NOT_READY or isinstance(exc, rexc.ClusterError):
                raise StoreUnavailable(f"Redis is not ready: {exc}") from exc
            raise StoreUnavailable(f"the store refused the request; nothing was applied: "
                                   f"{exc}") from exc
        except (rexc.RedisError, rexc.RedisClusterException, OSError, TimeoutError) as exc:
            if writes and not _never_sent(exc):
                raise OutcomeUnknown(
                    f"the store did not answer in time ({type(exc).__name__}: {exc}); the "
                    "request may or may not have been applied: retry with the same "
                    "Idempotency-Key") from exc
            raise StoreUnavailable(f"the store is unreachable: {type(exc).__name__}: {exc}")\
                from exc

    async def _run(self, script: str, name: str, args: list[Any] | None = None,
                   key_list: list[str] | None = None, writes: bool = False) -> Any:
        key_list = key_list or keys.session_keys(name)
        async with self._guard(writes):
            if writes and self._replica_acks:
                return await self._run_replicated(script, key_list, args or [])
            return await self._scripts[script](keys=key_list, args=args or [])

    async def _eval_on(self, conn: Any, script: str, key_list: list[str], args: list[Any]
                       ) -> Any:
        """EVALSHA on a connection this caller holds: what `_run` does without the client's
        layers (the pool's lock, retry and event hooks: ~25 us of a ~65 us call, measured
        with uvloop), for group commit's hot loop; the command is packed by hiredis (the
        same bytes as redis-py's packer, ~7x faster). A script Redis no longer has
        (restarted) is loaded and sent again. A connection error, a timeout or a
        cancellation leaves the connection disconnected (the next call reconnects), since
        its answer may still come; an error answer leaves it as it is."""
        evalsha = hiredis.pack_command(
            ("EVALSHA", self._scripts[script].sha, len(key_list), *key_list, *args))
        try:
            try:
                await conn.send_packed_command(evalsha)
                return await conn.read_response()
            except rexc.NoScriptError:
                await conn.send_command("SCRIPT", "LOAD", self._sources[script])
                await conn.read_response()
                await conn.send_packed_command(evalsha)
                return await conn.read_response()
        except rexc.ResponseError:
            raise
        except BaseException:
            await conn.disconnect(nowait=True)
            raise

    async def _run_replicated(self, script: str, key_list: list[str], args: list[Any]) -> Any:
        """The script, then WAIT on the same connection until `replica_acks` replicas have it:
        Redis replicates asynchronously, so an answer given before a replica holds the write
        could be lost by a failover. Unconfirmed in time: 504, and a retry with the same
        Idempotency-Key is answered from whichever node then holds the session."""
        cluster = isinstance(self._client, RedisCluster)
        route: dict[str, Any] = {}
        if cluster:
            await self._client.initialize()
            route["target_nodes"] = self._client.get_node_from_key(key_list[0])
        pipe = self._client.pipeline(transaction=False)
        # EVAL, not EVALSHA: a freshly promoted replica may not have the script cached.
        pipe.execute_command("EVAL", self._sources[script], len(key_list), *key_list, *args,
                             **route)
        pipe.execute_command("WAIT", self._replica_acks, self._replica_timeout_ms, **route)
        try:
            answer, acks = await pipe.execute()
        except (rexc.RedisError, OSError) as exc:
            if cluster:  # the slot may have moved (failover): ask the cluster before the retry
                await self._refresh_topology(route["target_nodes"].name)
            raise exc
        if int(acks) < self._replica_acks:
            raise OutcomeUnknown(
                f"the write reached the primary but {acks} of the {self._replica_acks} "
                "replicas required (TALLY_REDIS_REPLICA_ACKS) confirmed it in time; retry "
                "with the same Idempotency-Key")
        return answer

    async def _refresh_topology(self, failed_node: str) -> None:
        # Still failing over? Then the next request asks again.
        with contextlib.suppress(rexc.RedisError, rexc.RedisClusterException, OSError):
            await self._client.nodes_manager.initialize(last_failed_node_name=failed_node)

    async def _call(self, awaitable: Awaitable[T], writes: bool = False) -> T:
        async with self._guard(writes):
            return await awaitable

    # -- the protocol ------------------------------------------------------------------
    async def create(self, meta: SessionMeta) -> tuple[SessionMeta, bool]:
        existing = await self._run("create", meta.name, [
            meta.metric, orjson.dumps(meta.args), orjson.dumps(meta.config),
            repr(meta.created_at), "" if meta.ttl_seconds is None else str(meta.ttl_seconds),
            meta.id, *_window_args(meta.window), "" if meta.slices is None else str(meta.slices),
        ], writes=True)
        if existing:
            return _meta_from(meta.name, existing), False
        await self._call(self._client.zadd(keys.INDEX, {meta.name: 0}), writes=True)
        return meta, True

    async def get_meta(self, name: str) -> SessionMeta | None:
        flat = await self._call(self._client.hgetall(keys.meta(name)))
        return _meta_from(name, flat) if flat else None

    async def apply(self, name: str, batches: list[Batch]) -> list[Applied | TallyError]:
        """Group commit: while one script call for a session is in flight, the batches that
        arrive for it wait and go together in the next call (at most `group_commit` per call).
        Each batch keeps its own precondition, key and answer; an error of the call (503, 504,
        507) is every waiting request's answer, which is true for each of them."""
        if len(batches) == 1 and _worth_whole(batches[0]):
            whole = await self._apply_whole(name, batches[0])  # reads with _read_now
            if whole is not None:
                return [whole]
        if self._group_limit <= 1:
            return await self._apply_now(name, batches)
        loop = asyncio.get_running_loop()
        waiting = [(batch, loop.create_future()) for batch in batches]
        group = self._groups.get(name)
        if group is None:
            self._groups[name] = list(waiting)
            task = loop.create_task(self._commit_groups(name))
            self._committers.add(task)  # a reference, so the task is not collected early
            task.add_done_callback(self._committers.discard)
        else:
            group.extend(waiting)
        if len(waiting) == 1:  # the usual call (one request's batch): no gather to build
            return [await waiting[0][1]]
        return list(await asyncio.gather(*(future for _, future in waiting)))

    async def _apply_whole(self, name: str, batch: Batch) -> Applied | TallyError | None:
        """Read the sums, add the batch in numpy, and write them back in the apply script,
        which checks every precondition as always plus that no write came in between (the
        state version). After a few such races (a hot session) None: use the runs.

        A sliced batch also reads the slices' slots and sums: its new values get their
        slots here (in the order the script would give them; the version check makes the
        slots read still true when the write lands), and the slices' sums are written whole
        too."""
        sliced = bool(batch.slices)
        for _ in range(WHOLE_STATE_ATTEMPTS):
            found = await self._run("read", name, ["slices" if sliced else ""], key_list=[
                keys.meta(name), keys.state(name), keys.extremes(name),
                keys.slice_slots(name), keys.slice_sums(name)])
            if not found:
                return SessionNotFound(name)
            stored = _pairs(found[0])
            if stored.get("wb"):  # a windowed session: its bucket takes the runs too
                return None
            version = int(stored.get("v") or 0)
            whole = await asyncio.to_thread(_added, found[1], batch.sums)
            header = _header(batch, 0, whole_version=version)
            slices = b""
            if sliced:
                slots = {value: int(slot) for value, slot in _pairs(found[3]).items()}
                new = [part.value for part in batch.slices if part.value not in slots]
                limit = int(stored.get("sm") or 0)
                if len(slots) + len(new) > limit:
                    return TooManySlices(name, limit, len(slots), new)
                slots.update({value: len(slots) + i for i, value in enumerate(new)})
                slices = await asyncio.to_thread(_added_slices, found[4], batch, slots)
                del header["s"]  # the script admits nothing: the slots go as they are
                header["ns"] = [[value, slots[value]] for value in new]
            args = [*self._apply_head(name, orjson.dumps([header])), slices, whole]
            (answer,) = await self._run("apply", name, args, writes=True)
            if _text(answer) == "missing":
                return SessionNotFound(name)
            if _text(answer) != "V":
                return _decode_answer(name, batch, answer)
        return None

    async def _commit_groups(self, name: str) -> None:
        """Send the session's waiting batches, one call at a time, until none wait. On a
        single Redis the run keeps one connection of the pool for its calls (see `_eval_on`),
        giving it back at least every HOLD_SECONDS so that other sessions' runs waiting for
        one (more hot sessions than `max_connections`) get their turn; on a cluster, or with
        replica acknowledgements, each call goes through the client as any other. Cancelled
        (at shutdown), it answers every batch still waiting, so that no request waits for a
        run that is gone."""
        conn = None
        now: list[tuple[Batch, asyncio.Future[Applied | TallyError]]] = []
        loop, held_since = asyncio.get_running_loop(), 0.0
        pool = self._client.connection_pool if self._direct else None
        try:
            while True:
                group = self._groups.get(name) or []
                now, rest = group[:self._group_limit], group[self._group_limit:]
                if not now:
                    self._groups.pop(name, None)
                    return
                self._groups[name] = rest
                try:
                    if pool is not None and conn is not None \
                            and loop.time() - held_since > HOLD_SECONDS:
                        conn, held = None, conn
                        await pool.release(held)
                        await asyncio.sleep(0)  # a run waiting for a connection takes it first
                    if conn is None and pool is not None:
                        conn = await self._call(pool.get_connection())
                        held_since = loop.time()
                    answers = await self._apply_now(name, [batch for batch, _ in now], conn)
                except Exception as exc:  # noqa: BLE001 - every request of the call gets it
                    _settle(now, exc)
                    continue
                for (_, future), answer in zip(now, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        except asyncio.CancelledError:
            _settle(now, OutcomeUnknown("the service stopped while this update was being "
                                        "applied; retry with the same Idempotency-Key"))
            _settle(self._groups.pop(name, []), StoreUnavailable(
                "the service stopped before this update was applied; nothing was applied"))
            raise
        finally:
            if conn is not None:
                await self._client.connection_pool.release(conn)

    def _apply_head(self, name: str, headers: bytes) -> list[Any]:
        """apply.lua's ARGV before the batches' runs."""
        return [self._idempotency_ms, self._idempotency_keys, headers, repr(self.clock()),
                keys.window_prefix(name)]

    async def _apply_now(self, name: str, batches: list[Batch], conn: Any = None
                         ) -> list[Applied | TallyError]:
        headers, blobs = _encode_batches(batches)
        args = [*self._apply_head(name, headers), *blobs]
        if conn is None:
            answers = await self._run("apply", name, args, writes=True)
        else:
            async with self._guard(writes=True):
                answers = await self._eval_on(conn, "apply", keys.session_keys(name), args)
        if answers and _text(answers[0]) == "missing":
            return [SessionNotFound(name) for _ in batches]
        return [_decode_answer(name, b, a) for b, a in zip(batches, answers, strict=True)]

    async def read(self, name: str) -> Snapshot | None:
        """Read coalescing, the reads' group commit: reads of one session that arrive while a
        read of it is in flight wait for the next one and share its reply (a read never joins
        one already sent, so it sees every write acknowledged before it started). Callers
        share the Snapshot: it is read-only."""
        if self._group_limit <= 1:
            return await self._read_now(name)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Snapshot | None] = loop.create_future()
        waiting = self._readers.get(name)
        if waiting is None:
            self._readers[name] = [future]
            task = loop.create_task(self._serve_readers(name))
            self._committers.add(task)
            task.add_done_callback(self._committers.discard)
        else:
            waiting.append(future)
        return await future

    async def _serve_readers(self, name: str) -> None:
        while True:
            now = self._readers.get(name) or []
            if not now:
                self._readers.pop(name, None)
                return
            self._readers[name] = []
            try:
                snapshot = await self._read_now(name)
            except Exception as exc:  # noqa: BLE001 - every waiting reader gets it
                for future in now:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for future in now:
                if not future.done():
                    future.set_result(snapshot)

    async def _read_now(self, name: str) -> Snapshot | None:
        found = await self._run("read", name, key_list=[
            keys.meta(name), keys.state(name), keys.extremes(name)])
        if not found:
            return None
        return Snapshot(_meta_from(name, found[0]), state_from(found[1], found[2]))

    async def read_window(self, name: str, buckets: int) -> Snapshot | None:
        found = await self._run("read_window", name, [
            repr(self.clock()), buckets, keys.window_prefix(name)], key_list=[keys.meta(name)])
        if not found:
            return None
        state = await asyncio.to_thread(_summed, found[1]) if buckets > 64 \
            else _summed(found[1])
        return Snapshot(_meta_from(name, found[0]), state)

    async def read_window_slices(self, name: str, buckets: int, value: str | None = None
                                 ) -> Slices | None:
        mode = ["all"] if value is None else ["one", value]
        found = await self._run("read_window", name, [
            repr(self.clock()), buckets, keys.window_prefix(name), *mode],
            key_list=[keys.meta(name)])
        if not found:
            return None
        stride = _stride(_pairs(found[0]))
        if value is None:
            parts = [(_pairs(slots), sums) for slots, sums in found[1]]
        else:
            parts = [({value: "0"}, sums) for slot, sums in found[1] if _text(slot)]
        states = await asyncio.to_thread(_summed_slices, parts, stride) if buckets > 64 \
            else _summed_slices(parts, stride)
        return Slices(_meta_from(name, found[0]), states)

    async def read_slices(self, name: str, value: str | None = None) -> Slices | None:
        found = await self._run("read_slices", name, ["" if value is None else value],
                                key_list=[keys.meta(name), keys.slice_slots(name),
                                          keys.slice_sums(name), keys.slice_extremes(name)])
        if not found:
            return None
        meta = _pairs(found[0])
        states = _slice_states(_pairs(found[1]), found[2], found[3], _stride(meta))
        return Slices(_meta_from(name, found[0]), states)

    async def reset(self, name: str, expected_epoch: int | None = None
                    ) -> tuple[ClosedEpoch, SessionMeta]:
        out = await self._run("reset", name, [
            "" if expected_epoch is None else str(expected_epoch), self._history_limit,
        ], writes=True)
        kind = _text(out[0])
        if kind == "missing":
            raise SessionNotFound(name)
        if kind == "E":
            raise EpochMismatch(name, expected_epoch or 0, int(out[1]))
        closed = ClosedEpoch(int(out[1]), float(out[2]), state=state_from(out[3], out[4]))
        if out[6]:  # a sliced session: its slots, and the slices' strings
            slots, sums, extremes = out[6]
            closed.slices = _slice_states(_pairs(slots), sums, extremes,
                                          _stride(_pairs(out[5])))
        return closed, _meta_from(name, out[5])

    async def compact(self, name: str, epoch: int, result: bytes,
                      slices: bytes | None = None) -> None:
        args = [epoch, result] if slices is None else [epoch, result, slices]
        await self._run("compact", name, args, key_list=[keys.history(name)], writes=True)

    async def history(self, name: str) -> list[ClosedEpoch] | None:
        found = await self._run("history", name, key_list=[keys.meta(name),
                                                           keys.history(name)])
        if not found:
            return None
        flat = found[0]
        entries = [(int(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]
        return [_closed_from(epoch, entry) for epoch, entry in sorted(entries)]

    async def delete(self, name: str) -> bool:
        existed = await self._run("delete", name, [keys.window_prefix(name)], writes=True)
        await self._call(self._client.zrem(keys.INDEX, name), writes=True)
        return bool(existed)

    async def list(self, prefix: str = "", after: str | None = None, limit: int = 100,
                   max_elements: int | None = None, known: Known | None = None) -> Page:
        low = "(" + after if after is not None and after >= prefix else "[" + prefix
        high = "[" + prefix + "\U0010ffff" if prefix else "+"
        names = [_text(n) for n in await self._call(
            self._client.zrangebylex(keys.INDEX, low, high, start=0, num=limit + 1))]
        more = len(names) > limit
        names = names[:limit]
        if isinstance(self._client, RedisCluster):
            snapshots = await self._read_each(names, max_elements)
        else:
            snapshots = await self._read_page(names, max_elements, known)
        more = more or len(snapshots) < len(names)
        names = names[:len(snapshots)]
        gone = [n for n, s in zip(names, snapshots, strict=True) if s is None]  # TTL-expired
        if gone:
            await self._call(self._client.zrem(keys.INDEX, *gone), writes=True)
        found = [s for s in snapshots if s is not None]
        return Page(found, names[-1] if more and names else None)

    async def _read_page(self, names: builtins.list[str], max_elements: int | None,
                         known: Known | None = None) -> builtins.list[Snapshot | None]:
        """A page's sessions in one script call (a single Redis); fewer when the budget
        stops it. Sessions whose id and version are those of `known(name)` are not read
        (the script answers 1): the caller holds their state's result."""
        if not names:
            return []
        metas: builtins.list[SessionMeta | None] = []
        tokens = []
        for name in names:  # one pass: a page is a thousand names
            held = known(name) if known is not None else None
            if held is None:
                metas.append(None)
                tokens.append(f"{name}\n\n")
            else:
                ours = held.meta
                metas.append(ours)
                tokens.append(f"{name}\n{ours.id}:{ours.version}:{held.elements}\n")
        found = await self._run("read_many", names[0], [
            max_elements or 0, len(META_FIELDS), *META_FIELDS, *PAGE_KEY_AFFIXES,
            "".join(tokens)], key_list=[keys.meta(names[0])])
        out: builtins.list[Snapshot | None] = []
        for name, meta, entry in zip(names, metas, found, strict=False):
            if isinstance(entry, int) and meta is not None:
                out.append(Snapshot(meta, UNREAD))
            elif meta is not None and len(entry) in (MOVED_ENTRY, MOVED_ENTRY_WHOLE):
                out.append(_moved(meta, entry))
            elif entry:
                out.append(Snapshot(_meta_of(name, dict(zip(META_FIELDS, entry[0], strict=True))),
                                    state_from(entry[1], entry[2])))
            else:
                out.append(None)
        return out

    async def _read_each(self, names: builtins.list[str], max_elements: int | None
                         ) -> builtins.list[Snapshot | None]:
        """A page's sessions read one by one, a few at a time (a Cluster: they live in
        different slots), after cutting the page at the budget."""
        if max_elements is not None:
            names = await self._within_budget(names, max_elements)
        gate = asyncio.Semaphore(LIST_CONCURRENCY)

        async def read(name: str) -> Snapshot | None:
            async with gate:
                return await self._read_now(name)

        return list(await asyncio.gather(*(read(name) for name in names)))

    async def _within_budget(self, names: builtins.list[str], max_elements: int
                             ) -> builtins.list[str]:
        """The longest leading run of `names` whose stored states together stay within
        `max_elements` (at least one name), from the strings' lengths: one cheap pipeline."""
        async with self._guard():
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.strlen(keys.state(name))
                pipe.strlen(keys.extremes(name))
            sizes = await pipe.execute()
        total = 0
        for i in range(len(names)):
            total += int(sizes[2 * i]) // 8 + int(sizes[2 * i + 1]) // 9
            if i and total > max_elements:
                return names[:i]
        return names

    async def ping(self) -> None:
        """Answers, and can take writes: a Redis at its `maxmemory` that does not evict
        refuses every update, so it is not ready (507)."""
        await self._call(self._client.ping())
        if isinstance(self._client, RedisCluster):
            info = await self._call(self._client.info(
                "memory", target_nodes=RedisCluster.PRIMARIES))
            nodes = list(info.values()) if info and isinstance(
                next(iter(info.values())), dict) else [info]
        else:
            nodes = [await self._call(self._client.info("memory"))]
        for node in nodes:
            limit, used = int(node.get("maxmemory", 0)), int(node.get("used_memory", 0))
            if limit and used >= limit and node.get("maxmemory_policy") == "noeviction":
                raise StoreFull(f"the store is out of memory ({used} of {limit} bytes used, "
                                "maxmemory-policy noeviction): updates are refused")

    async def close(self) -> None:
        await self._client.aclose()
