"""Sessions: what each endpoint does, between the HTTP layer, the metric engine and the store.

Routes stay thin (parse, authorise, answer); this module holds the rules: names, configs,
which metric a session runs, how a batch becomes increments, how a state becomes a result.

Batch math and large reads run in worker threads (`_offload`) so that one large request never
stalls the event loop; small ones stay inline, where a thread hop would cost more than the
work. Metric objects are borrowed from a pool (`metric_pool.py`), never shared between
requests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import anyio
import numpy as np
import orjson

from app.errors import Conflict, InvalidInput, NotFound, TallyError
from app.listing import page_results
from app.merging import PendingUpdate, UpdateMerger, can_merge
from app.metric_pool import MetricPool
from app.metrics import engine
from app.metrics.base import Metric
from app.metrics.collection import COLLECTION, MetricCollection, build_collection
from app.metrics.registry import REGISTRY, Registry
from app.result_cache import MISS, ResultCache
from app.slicing import Slicing, check_aligned, rows
from app.store.base import (
    UNREAD,
    Applied,
    Batch,
    ClosedEpoch,
    Joined,
    MergedKeySeen,
    SessionMeta,
    SessionNotFound,
    SliceRuns,
    Slices,
    Snapshot,
    StaleSession,
    Store,
    Window,
    canonical_layout,
)
from app.store.state import State

log = logging.getLogger("tally")
T = TypeVar("T")

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
IDEMPOTENCY_KEY_MAX = 128
PLUGIN_CHECKS = 3  # batches per plugin class and process checked to be pure increments
#: Work above these sizes runs in a worker thread (below, the hop costs more than the work).
OFFLOAD_BATCH_ELEMENTS = 16_384
OFFLOAD_STATE_ELEMENTS = 65_536
#: A batch with more per-sample slice values than this runs the metric once per value: offload.
OFFLOAD_SLICE_VALUES = 8
#: The longest time window (buckets x bucket seconds): a leap year.
MAX_WINDOW_SECONDS = 366 * 24 * 3600
WINDOW_FIELDS = ("bucket_seconds", "buckets")


def valid_name(name: str) -> bool:
    return NAME_PATTERN.fullmatch(name) is not None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(config, option=orjson.OPT_SERIALIZE_NUMPY))


def fingerprint(route: str, arrays: dict[str, np.ndarray | None], epoch: int | None) -> str:
    """What an Idempotency-Key is bound to: the route and the decoded request (so a JSON and
    an `.npz` encoding of the same batch are the same request)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{route} {epoch}".encode())
    for name in sorted(arrays):
        array = arrays[name]
        if array is None:
            continue
        digest.update(f"|{name}{array.shape}{_dtype_name(array.dtype)}|".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@functools.cache
def _dtype_name(dtype: np.dtype[Any]) -> str:
    """str(dtype), which costs numpy ~6 us, once per dtype (a keyed update's hot path)."""
    return str(dtype)


def encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        name = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        name = ""
    if not valid_name(name):
        raise InvalidInput(f"'cursor' must be a next_cursor this service returned; got "
                           f"{cursor!r:.100}")
    return name


def listing_prefix(prefix: str, grant_prefix: str) -> str | None:
    """The names both the query and the caller's token cover, as one prefix (None: none)."""
    if prefix.startswith(grant_prefix):
        return prefix
    if grant_prefix.startswith(prefix):
        return grant_prefix
    return None


class Sessions:
    """The service's operations on metric sessions."""

    def __init__(self, store: Store, registry: Registry = REGISTRY, *,
                 max_ttl_seconds: int = 365 * 24 * 3600,
                 max_state_elements: int = 1_048_576,
                 metric_cache_bytes: int = 256 * 1024 * 1024,
                 worker_threads: int = 2,
                 max_window_buckets: int = 1440,
                 max_window_elements: int = 4_194_304,
                 max_slices: int = 1000,
                 merge_updates: int = 64) -> None:
        self.store = store
        self.max_slices = max_slices
        self.max_window_buckets = max_window_buckets
        self.max_window_elements = max_window_elements
        self.registry = registry
        self.max_ttl_seconds = max_ttl_seconds
        self.max_state_elements = max_state_elements
        self.metrics = MetricPool(registry, metric_cache_bytes, max_state_elements)
        self._metas: OrderedDict[str, SessionMeta] = OrderedDict()
        self._verified: dict[type, int] = {}  # plugin class -> batches checked additive
        #: Results by session incarnation, epoch and state version (result_cache.py): reads
        #: and listings of unchanged sessions (and reads the store coalesced) skip the math.
        self.results = ResultCache()
        self._threads = anyio.CapacityLimiter(worker_threads)
        #: Concurrent small updates of a session computed as one batch (1: never).
        self.merger = UpdateMerger(self._apply_alone, self._apply_merged, merge_updates)

    async def _offload(self, heavy: bool, work: Callable[[], T]) -> T:
        """Run `work` in a worker thread when it is heavy, else inline."""
        if not heavy:
            return work()
        return await anyio.to_thread.run_sync(work, limiter=self._threads)

    async def _meta(self, name: str, *, fresh: bool = False) -> SessionMeta:
        meta = None if fresh else self._metas.get(name)
        if meta is None:
            meta = await self.store.get_meta(name)
            if meta is None:
                self._metas.pop(name, None)
                raise SessionNotFound(name)
            self._metas[name] = meta
            if len(self._metas) > 10000:
                self._metas.popitem(last=False)
        return meta

    # -- documents ---------------------------------------------------------------------
    def document(self, meta: SessionMeta) -> dict[str, Any]:
        with self.metrics.borrow(meta.metric, meta.args) as metric:
            variables = engine.describe_variables(metric, meta.layout)
        return {
            "name": meta.name,
            **hosted(meta),
            "config": meta.config,
            "epoch": meta.epoch,
            "variables": variables,
            "created_at": iso(meta.created_at),
            "ttl_seconds": meta.ttl_seconds,
            "window": None if meta.window is None else meta.window.as_json(),
            "slices": None if meta.slices is None else {"max": meta.slices},
        }

    def result_of(self, meta: SessionMeta, state: State) -> Any:
        with self.metrics.borrow(meta.metric, meta.args) as metric:
            return engine.result_json(metric, state, meta.layout)

    async def _result(self, meta: SessionMeta, state: State) -> Any:
        heavy = state.elements > OFFLOAD_STATE_ELEMENTS
        return await self._offload(heavy, lambda: self.result_of(meta, state))

    async def _epoch_result(self, meta: SessionMeta, state: State) -> Any:
        """The result of the epoch's state (never a window's: see result_cache.py), from the
        cache when this state's was computed before."""
        result = self.results.get(meta, state)
        if result is MISS:
            result = await self._result(meta, state)
            self.results.put(meta, state, result)
        return result

    async def snapshot(self, name: str) -> Snapshot:
        snap = await self.store.read(name)
        if snap is None:
            raise SessionNotFound(name)
        return snap

    # -- operations --------------------------------------------------------------------
    async def create(self, name: str, metric: str | None, config: dict[str, Any] | None,
                     ttl_seconds: int | None, members: list[Any] | None = None,
                     window: Window | None = None, slices: int | None = None
                     ) -> tuple[dict[str, Any], bool]:
        """Create a session of one metric class (`metric`, `config`) or a collection
        (`members`: `[{"metric", "config"?}, ...]`), with a time `window` if given (see
        `window_from`) and up to `slices` slice values per epoch (see `slices_from`)."""
        instance: Metric
        if members is not None:
            instance = build_collection(self.registry, {"metrics": members})
            # The compute groups fix the storage layout: recorded with the session.
            canonical = COLLECTION
            args = _jsonable({"metrics": members, "shared": instance.shared_names()})
        elif metric is not None:
            spec, instance = self.registry.build(metric, config)
            canonical, args = spec.name, _jsonable(config or {})
        else:
            raise InvalidInput("a session needs 'metric' (one metric class) or 'metrics' (a "
                               "collection); got neither")
        instance.limit_state(self.max_state_elements)
        if window is not None:
            self._check_window_fits(window, instance, instance.state_elements(), "config",
                                    slices)
        if slices is not None:
            self._check_slices_fit(slices, instance.state_elements(), "config")
        full = _jsonable(instance.get_config())
        meta = SessionMeta(name=name, metric=canonical, args=args, config=full,
                           created_at=time.time(), ttl_seconds=ttl_seconds, id=uuid.uuid4().hex,
                           window=window, slices=slices)
        stored, created = await self.store.create(meta)
        if not created and not self._same(stored, meta):
            raise Conflict(
                f"session {name!r} exists with {describe(stored)}, config "
                f"{orjson.dumps(stored.config).decode()}, window {_window_text(stored)} and "
                f"slices {_slices_text(stored)}; this request asks for {describe(meta)}, "
                f"config {orjson.dumps(meta.config).decode()}, window {_window_text(meta)} "
                f"and slices {_slices_text(meta)}")
        self._metas[name] = stored
        return self.document(stored), created

    @staticmethod
    def _same(a: SessionMeta, b: SessionMeta) -> bool:
        """Equal metric, full config, window and slices; constructor arguments that Keras leaves
        out of `get_config` (CosineSimilarity's axis) must be equal too."""
        def identity(m: SessionMeta) -> bytes:
            window = None if m.window is None else m.window.as_json()
            return _canonical([m.metric, m.config, _hidden_args(m), window, m.slices])
        return identity(a) == identity(b)

    async def get(self, name: str) -> dict[str, Any]:
        snap = await self.snapshot(name)
        return {**self.document(snap.meta),
                "result": await self._epoch_result(snap.meta, snap.state)}

    async def update(self, name: str, inputs: dict[str, np.ndarray],
                     sample_weight: np.ndarray | None, epoch: int | None,
                     idempotency_key: str | None, slicing: Slicing | None = None) -> Applied:
        check_idempotency_key(idempotency_key)
        elements = sum(a.size for a in inputs.values())
        heavy = elements > OFFLOAD_BATCH_ELEMENTS or (
            slicing is not None and len(slicing.values) > OFFLOAD_SLICE_VALUES)
        key_print = "" if idempotency_key is None else fingerprint(
            "update", {**inputs, "sample_weight": sample_weight,
                       **(slicing.fingerprint_arrays() if slicing else {})}, epoch)
        if slicing is None and not heavy and self.merger.max_updates > 1 \
                and can_merge(inputs, sample_weight):
            weights = 0 if sample_weight is None else sample_weight.size
            return await self.merger.submit(name, PendingUpdate(
                inputs, sample_weight, epoch, idempotency_key, key_print,
                engine.count_samples(inputs), elements + weights))
        batch_for = partial(self._batch_for, inputs=inputs, sample_weight=sample_weight,
                            slicing=slicing)
        return await self._apply(name, batch_for, epoch, idempotency_key, key_print, heavy)

    def _batch_for(self, meta: SessionMeta, *, inputs: dict[str, np.ndarray],
                   sample_weight: np.ndarray | None, slicing: Slicing | None) -> Batch:
        with self.metrics.borrow(meta.metric, meta.args) as metric:
            return self._compute_batch(meta, metric, inputs, sample_weight, slicing)

    def _compute_batch(self, meta: SessionMeta, metric: Metric, inputs: dict[str, np.ndarray],
                       sample_weight: np.ndarray | None, slicing: Slicing | None) -> Batch:
        """One update's batch for the session's metric (borrowed by the caller)."""
        missing = [k for k in metric.inputs if k not in inputs]
        extra = [k for k in inputs if k not in metric.inputs]
        if missing or extra:
            raise InvalidInput(
                f"{describe(meta)} takes {list(metric.inputs)} (and optional "
                f"sample_weight, epoch); missing {missing}, unexpected {extra}")
        plugins = self._unverified_plugins(meta, metric)
        if slicing is not None:
            self._check_sliceable(meta, slicing, inputs, sample_weight)
        delta = engine.contribution(metric, inputs, sample_weight, meta.layout,
                                    check_additive=bool(plugins))
        for cls in plugins:
            self._verified[cls] = self._verified.get(cls, 0) + 1
        self._check_first_layout(meta, metric, delta)
        batch = _batch(delta)
        if slicing is not None:
            self._add_slices(batch, metric, meta, delta, slicing, inputs, sample_weight)
        return batch

    # -- merged updates (app/merging.py) -----------------------------------------------
    async def _apply_alone(self, name: str, update: PendingUpdate) -> Applied:
        batch_for = partial(self._batch_for, inputs=update.inputs,
                            sample_weight=update.sample_weight, slicing=None)
        return await self._apply(name, batch_for, update.epoch, update.idempotency_key,
                                 update.fingerprint, False)

    async def _apply_merged(self, name: str, part: list[PendingUpdate]
                            ) -> Applied | TallyError | None:
        """Several updates of the session as one batch: the first one's answer, or the error
        that answers them all; None when they must go alone (see app/merging.py)."""
        meta = await self._meta(name)
        first = part[0]
        inputs = {k: np.concatenate([u.inputs[k] for u in part]) for k in first.inputs}
        weight = None if first.sample_weight is None else np.concatenate(
            [u.sample_weight for u in part if u.sample_weight is not None])
        try:
            batch = self._merged_batch(meta, inputs, weight)
        except Exception:  # noqa: BLE001 - one bad batch among them: each goes alone
            return None
        if batch is None:
            return None
        batch.samples, batch.epoch, batch.session_id = first.samples, first.epoch, meta.id
        batch.idempotency_key, batch.fingerprint = first.idempotency_key, first.fingerprint
        batch.joined = [Joined(u.idempotency_key, u.fingerprint, u.samples) for u in part[1:]]
        (outcome,) = await self.store.apply(name, [batch])
        if isinstance(outcome, MergedKeySeen | StaleSession | SessionNotFound):
            return None
        if batch.layout is not None and meta.layout is None and isinstance(outcome, Applied):
            meta.layout = orjson.loads(batch.layout)
        return outcome

    def _merged_batch(self, meta: SessionMeta, inputs: dict[str, np.ndarray],
                      sample_weight: np.ndarray | None) -> Batch | None:
        """The batch of concatenated updates, if the session's metric is built in and merges
        batches of these shapes (else None)."""
        with self.metrics.borrow(meta.metric, meta.args) as metric:
            if self._plugin_classes(meta, metric) or not metric.merges_along_batch(inputs):
                return None
            return self._compute_batch(meta, metric, inputs, sample_weight, None)

    # -- slices ------------------------------------------------------------------------
    def slices_from(self, value: Any) -> int:
        """A create body's `slices`: `{"max": M}`, M an integer from 1 to max_slices."""
        expected = f'\'slices\' must be {{"max": <integer from 1 to {self.max_slices}>}}'
        if not isinstance(value, dict) or list(value) != ["max"] \
                or not _is_int(value["max"]) or not 1 <= value["max"] <= self.max_slices:
            raise InvalidInput(f"{expected} (TALLY_MAX_SLICES); got {_short(value)}")
        return int(value["max"])

    def _check_slices_fit(self, slices: int, elements: int | None, what: str) -> None:
        """A sliced session keeps its own state and up to `slices` more: together within the
        state limit (422). `elements` None: a lazy metric, checked at its first batch."""
        if elements is not None and (slices + 1) * elements > self.max_state_elements:
            raise InvalidInput(
                f"a session with up to {slices} slices keeps ({slices} + 1) x {elements} state "
                f"elements with this {what}, more than the {self.max_state_elements} allowed "
                "(TALLY_MAX_STATE_ELEMENTS): allow fewer slices or use a smaller state")

    @staticmethod
    def _check_sliceable(meta: SessionMeta, slicing: Slicing, inputs: dict[str, np.ndarray],
                         sample_weight: np.ndarray | None) -> None:
        if meta.slices is None:
            raise InvalidInput(f"session {meta.name!r} was created without slices (create it "
                               "with \"slices\": {\"max\": M}), so an update cannot name "
                               "'slice' or 'slices'")
        if slicing.codes is not None:
            check_aligned(inputs, sample_weight, slicing.samples)

    def _add_slices(self, batch: Batch, metric: Metric, meta: SessionMeta,
                    delta: engine.Contribution, slicing: Slicing,
                    inputs: dict[str, np.ndarray], sample_weight: np.ndarray | None) -> None:
        """Each slice value's increments: the whole batch's for `slice`, else the metric's
        update on exactly the samples of each value (refused early past the session's limit;
        the store checks the limit exactly, against the values the epoch has seen)."""
        batch.stride = engine.space_sizes(metric)
        if slicing.whole is not None:
            batch.slices = [SliceRuns(slicing.whole, delta.sum_runs, delta.max_runs,
                                      delta.min_runs)]
            return
        parts = slicing.groups()
        limit = meta.slices or 0
        if len(parts) > limit:
            raise InvalidInput(f"this batch names {len(parts)} distinct slice values; session "
                               f"{meta.name!r} keeps at most {limit} per epoch. Nothing was "
                               "applied")
        for value, index in parts:
            taken, weight = rows(inputs, sample_weight, index)
            part = engine.contribution(metric, taken, weight, delta.layout or meta.layout)
            batch.slices.append(SliceRuns(value, part.sum_runs, part.max_runs, part.min_runs))

    # -- time windows ------------------------------------------------------------------
    def window_from(self, value: Any) -> Window:
        """A create body's `window`: `{"bucket_seconds": B, "buckets": K}`, integers, B >= 1,
        1 <= K <= max_window_buckets, B x K at most MAX_WINDOW_SECONDS."""
        expected = ('\'window\' must be {"bucket_seconds": <integer >= 1>, "buckets": <integer '
                    f'from 1 to {self.max_window_buckets}>}} spanning at most '
                    f'{MAX_WINDOW_SECONDS} seconds')
        if not isinstance(value, dict) or sorted(value) != sorted(WINDOW_FIELDS):
            raise InvalidInput(f"{expected}; got {_short(value)}")
        seconds, buckets = value["bucket_seconds"], value["buckets"]
        if not _is_int(seconds) or not _is_int(buckets) or seconds < 1 \
                or not 1 <= buckets <= self.max_window_buckets \
                or seconds * buckets > MAX_WINDOW_SECONDS:
            raise InvalidInput(f"{expected}; got {_short(value)}")
        return Window(seconds, buckets)

    def _check_window_fits(self, window: Window, metric: Metric, elements: int | None,
                           what: str, slices: int | None = None) -> None:
        """A window keeps a whole state per bucket (and one per slice value of a sliced
        session, up to `slices`), and buckets hold sums only: refuse (422) a metric with
        max/min variables, or one whose buckets together would exceed `max_window_elements`.
        `elements` None: a lazy metric, checked at its first batch."""
        extremes = sorted({v.name for v in metric.stored_variables if v.aggregation != "sum"})
        if extremes:
            raise InvalidInput(f"a time window needs a metric whose variables all add up "
                               f"(aggregation 'sum'); this one keeps max/min variables "
                               f"{extremes}")
        states = 1 + (slices or 0)
        if elements is not None and window.buckets * states * elements \
                > self.max_window_elements:
            each = f"{elements}" if states == 1 else f"({slices} + 1 slices) x {elements}"
            raise InvalidInput(
                f"a window of {window.buckets} buckets keeps {window.buckets} x {each} "
                f"state elements with this {what}, more than the {self.max_window_elements} "
                "allowed (TALLY_MAX_WINDOW_ELEMENTS): use fewer buckets, fewer slices or a "
                "smaller state")

    def _check_first_layout(self, meta: SessionMeta, metric: Metric,
                            delta: engine.Contribution) -> None:
        """A lazy metric's first batch fixes its state size: check the session's window and
        slices against it then (nothing is applied when refused)."""
        if delta.layout is None or meta.layout is not None:
            return
        what = "first batch's layout"
        if meta.window is not None:
            self._check_window_fits(meta.window, metric, metric.state_elements(), what,
                                    meta.slices)
        if meta.slices is not None:
            self._check_slices_fit(meta.slices, metric.state_elements(), what)

    def _unverified_plugins(self, meta: SessionMeta, metric: Metric) -> list[type]:
        """The plugin classes (the metric's, or a collection's members') whose first batches
        are still to be checked to be pure increments."""
        return [cls for cls in self._plugin_classes(meta, metric)
                if self._verified.get(cls, 0) < PLUGIN_CHECKS]

    def _plugin_classes(self, meta: SessionMeta, metric: Metric) -> list[type]:
        """The classes of the metric (or of a collection's members) that are not built in."""
        if not isinstance(metric, MetricCollection):  # the hot path: one lookup
            return [] if self.registry.resolve(meta.metric).builtin else [type(metric)]
        return [type(m.metric) for m in metric.members
                if not self.registry.resolve(m.class_name).builtin]

    async def merge(self, name: str, variables: dict[str, Any], epoch: int | None,
                    idempotency_key: str | None, slice_value: str | None = None) -> Applied:
        """Add pre-aggregated variables; with `slice_value`, to that slice and the overall."""
        def batch_for(meta: SessionMeta) -> Batch:
            with self.metrics.borrow(meta.metric, meta.args) as metric:
                delta = engine.merge_contribution(metric, variables, meta.layout)
                self._check_first_layout(meta, metric, delta)
                batch = _batch(delta)
                if slice_value is not None:
                    whole = Slicing(whole=slice_value)
                    self._check_sliceable(meta, whole, {}, None)
                    self._add_slices(batch, metric, meta, delta, whole, {}, None)
                return batch

        arrays: dict[str, np.ndarray | None] = {
            k: np.asarray(v, np.float64) for k, v in variables.items()}
        if slice_value is not None:
            arrays["\0slice"] = np.array(slice_value)  # cannot clash with a variable name
        key_print = "" if idempotency_key is None else fingerprint("merge", arrays, epoch)
        return await self._apply(name, batch_for, epoch, idempotency_key, key_print, False)

    async def _apply(self, name: str, batch_for: Callable[[SessionMeta], Batch],
                     epoch: int | None, idempotency_key: str | None, key_print: str,
                     heavy: bool) -> Applied:
        """Compute the batch for the session's metric and apply it in one round trip; if the
        cached meta was stale (session deleted or re-created), refresh it once and retry."""
        check_idempotency_key(idempotency_key)
        for attempt in range(2):
            cached = attempt == 0 and name in self._metas
            meta = await self._meta(name, fresh=attempt > 0)
            try:
                batch = await self._offload(heavy, partial(batch_for, meta))
            except InvalidInput:
                if not cached:
                    raise
                # The cached meta may be of a deleted and re-created session (another shape).
                self._metas.pop(name, None)
                continue
            batch.epoch, batch.idempotency_key, batch.session_id = epoch, idempotency_key, meta.id
            batch.fingerprint = key_print
            (outcome,) = await self.store.apply(name, [batch])
            if isinstance(outcome, StaleSession | SessionNotFound) and attempt == 0:
                self._metas.pop(name, None)
                continue
            if isinstance(outcome, TallyError):
                raise outcome
            if batch.layout is not None and meta.layout is None:
                meta.layout = orjson.loads(batch.layout)
            return outcome
        raise AssertionError("unreachable")

    async def result(self, name: str, window_seconds: int | None = None,
                     slice_value: str | None = None) -> dict[str, Any]:
        """The epoch's result, or with `window_seconds` the result over the last seconds'
        window buckets, or with `slice_value` that slice's result in the epoch."""
        if slice_value is not None:
            return await self._slice_result(name, slice_value, window_seconds)
        if window_seconds is not None:
            return await self._window_result(name, window_seconds)
        snap = await self.snapshot(name)
        result = await self._epoch_result(snap.meta, snap.state)
        return {"name": name, "epoch": snap.meta.epoch, "result": result}

    async def _window_result(self, name: str, seconds: int) -> dict[str, Any]:
        """The result over the current window bucket and the `seconds / B - 1` before it: the
        window is checked against the meta, then the buckets are read in one round trip."""
        for attempt in range(2):
            meta = await self._meta(name, fresh=attempt > 0)
            if meta.window is None and attempt == 0:  # the cache may be of an earlier session
                continue
            snap = await self.store.read_window(name, window_buckets(meta, seconds))
            if snap is None:
                self._metas.pop(name, None)
                raise SessionNotFound(name)
            if snap.meta.id == meta.id:  # else re-created since the meta was cached: again
                return {"name": name, "epoch": snap.meta.epoch, "window_seconds": seconds,
                        "result": await self._result(snap.meta, snap.state)}
        raise SessionNotFound(name)  # re-created twice while this read ran: gone again

    async def _slices(self, name: str, value: str | None, seconds: int | None = None
                      ) -> Slices:
        """The session's slices (all, or `value`) in the epoch, or with `seconds` over that
        window: 422 on a session without slices (or without a window), 404 for a value the
        epoch (or the window) has not seen."""
        if seconds is None:
            found = await self.store.read_slices(name, value)
        else:  # the window is checked against the meta first, as for the overall result
            buckets = window_buckets(await self._meta(name, fresh=True), seconds)
            found = await self.store.read_window_slices(name, buckets, value)
        if found is None:
            self._metas.pop(name, None)
            raise SessionNotFound(name)
        if found.meta.slices is None:
            raise InvalidInput(f"session {name!r} was created without slices (create it with "
                               "\"slices\": {\"max\": M}), so it has no per-slice results")
        if value is not None and value not in found.states:
            where = f"epoch {found.meta.epoch}: no batch of this epoch" if seconds is None \
                else f"the last {seconds} seconds: no batch of that window"
            raise NotFound(f"session {name!r} has no slice {value!r} in {where} named it")
        return found

    async def _slice_result(self, name: str, value: str, seconds: int | None
                            ) -> dict[str, Any]:
        found = await self._slices(name, value, seconds)
        window = {} if seconds is None else {"window_seconds": seconds}
        return {"name": name, "epoch": found.meta.epoch, **window, "slice": value,
                "result": await self._result(found.meta, found.states[value])}

    async def slices(self, name: str, window_seconds: int | None = None) -> dict[str, Any]:
        """Every slice's result in the current epoch, or over the last seconds' window."""
        found = await self._slices(name, None, window_seconds)
        window = {} if window_seconds is None else {"window_seconds": window_seconds}
        return {"name": name, "epoch": found.meta.epoch, **window,
                "slices": await self._slice_results(found.meta, found.states)}

    async def _slice_results(self, meta: SessionMeta, states: dict[str, State]
                             ) -> dict[str, Any]:
        """Results of many slices with one borrowed metric (off the loop when large)."""
        def work() -> dict[str, Any]:
            with self.metrics.borrow(meta.metric, meta.args) as metric:
                return {value: engine.result_json(metric, state, meta.layout)
                        for value, state in states.items()}

        heavy = sum(state.elements for state in states.values()) > OFFLOAD_STATE_ELEMENTS
        return await self._offload(heavy, work)

    async def variables(self, name: str, slice_value: str | None = None) -> dict[str, Any]:
        if slice_value is None:
            snap = await self.snapshot(name)
            extra: dict[str, Any] = {}
        else:
            found = await self._slices(name, slice_value)
            snap = Snapshot(found.meta, found.states[slice_value])
            extra = {"slice": slice_value}

        def work() -> list[dict[str, Any]]:
            with self.metrics.borrow(snap.meta.metric, snap.meta.args) as metric:
                return engine.variables_json(metric, snap.state, snap.meta.layout)

        heavy = snap.state.elements > OFFLOAD_STATE_ELEMENTS
        return {"name": name, "epoch": snap.meta.epoch, **extra,
                "variables": await self._offload(heavy, work)}

    async def config(self, name: str) -> dict[str, Any]:
        return (await self._meta(name, fresh=True)).config

    async def reset(self, name: str, epoch: int | None) -> dict[str, Any]:
        closed, meta = await self.store.reset(name, epoch)
        return {"epoch": meta.epoch, "closed": await self._closed(name, meta, closed)}

    async def _closed(self, name: str, meta: SessionMeta, closed: ClosedEpoch
                      ) -> dict[str, Any]:
        """A closed epoch's answer; a raw one is computed and compacted in the history (best
        effort: a failed compaction is retried by the next read of the history)."""
        result, slices = closed.result, closed.slice_results
        if not closed.compacted:
            result = await self._result(meta, closed.state or State())
            if closed.slices is not None:
                slices = await self._slice_results(meta, closed.slices)
            try:
                await self.store.compact(name, closed.epoch, orjson.dumps(result),
                                         None if slices is None else orjson.dumps(slices))
            except TallyError as exc:
                log.warning("history of %r: epoch %d not compacted yet: %s", name,
                            closed.epoch, exc.detail)
        answer = {"epoch": closed.epoch, "result": result, "closed_at": iso(closed.closed_at)}
        if slices is not None:
            answer["slices"] = slices
        return answer

    async def history(self, name: str) -> dict[str, Any]:
        meta = await self._meta(name, fresh=True)
        epochs = await self.store.history(name)
        if epochs is None:
            raise SessionNotFound(name)
        return {"name": name, "epochs": [await self._closed(name, meta, c) for c in epochs]}

    async def delete(self, name: str) -> None:
        self._metas.pop(name, None)
        self.results.forget(name)
        if not await self.store.delete(name):
            raise SessionNotFound(name)

    async def listing(self, prefix: str, cursor: str | None, limit: int,
                      grant_prefix: str = "") -> dict[str, Any]:
        """One page of sessions under `prefix` that the caller may see, with their results."""
        after = None if cursor is None else decode_cursor(cursor)
        covered = listing_prefix(prefix, grant_prefix)
        if covered is None:
            return {"sessions": [], "next_cursor": None}
        page = await self.store.list(covered, after, limit,
                                     max_elements=self.max_state_elements,
                                     known=self.results.known)
        listed, pending = await self._listed_results(page.sessions)

        def results() -> tuple[list[dict[str, Any]], list[tuple[SessionMeta, State, Any]]]:
            found, fresh = page_results(
                listed, self.metrics, lambda meta, metric: not self._plugin_classes(meta, metric))
            return [listed_entry(snap.meta, result)
                    for (snap, _), result in zip(listed, found, strict=True)], fresh

        entries, fresh = await self._offload(pending > OFFLOAD_STATE_ELEMENTS, results)
        if fresh:
            # Stored once the answer is on its way: storing a page's results (and freeing the
            # entries they replace) costs ~1.2 ms for a thousand, which the answer need not
            # wait for (a read that comes first computes its own result, as it would anyway).
            asyncio.get_running_loop().call_soon(self.results.put_many, fresh)
        return {"sessions": entries,
                "next_cursor": None if page.last is None else encode_cursor(page.last)}

    async def _listed_results(self, snapshots: list[Snapshot]
                              ) -> tuple[list[tuple[Snapshot, Any]], int]:
        """Each listed session with its cached result, or MISS, and how many state elements
        are left to compute (above a size, in a worker thread). A session the store did not
        read (UNREAD: its cached result was current) whose entry was replaced or evicted
        since is read now; one deleted meanwhile is left out."""
        out, pending = [], 0
        for snap in snapshots:
            if snap.state is UNREAD:
                result = self.results.get_unread(snap.meta)
                if result is MISS:
                    fresh = await self.store.read(snap.meta.name)
                    if fresh is None:
                        continue
                    snap, result = fresh, self.results.get(fresh.meta, fresh.state)
            else:
                result = self.results.get(snap.meta, snap.state)
            if result is MISS:
                pending += snap.state.elements
            out.append((snap, result))
        return out, pending

    def catalogue(self) -> list[dict[str, Any]]:
        out = []
        for spec in self.registry.specs():
            params = spec.parameters()
            defaults = {k: p.default for k, p in params.items() if p.default is not p.empty}
            try:
                _, instance = self.registry.build(spec.name, {})
                defaults = instance.get_config()
            except TallyError:
                pass  # classes with required arguments show their signature defaults
            out.append({"name": spec.name, "aliases": list(spec.aliases),
                        "inputs": spec.inputs, "required": spec.required(),
                        "config": _jsonable(defaults)})
        return out


def hosted(meta: SessionMeta) -> dict[str, Any]:
    """What a session hosts, as its document says it: `{"metric": <class>}`, or for a
    collection `{"metrics": [<member class>, ...]}`."""
    if meta.metric == COLLECTION:
        return {"metrics": [m["class_name"] for m in meta.config["metrics"]]}
    return {"metric": meta.metric}


def listed_entry(meta: SessionMeta, result: Any) -> dict[str, Any]:
    """A session's entry in a listing: name, what it hosts, epoch, result (and a sliced
    session's limit). Built directly, not by unpacking `hosted`: a page holds a thousand."""
    if meta.metric == COLLECTION:
        entry = {"name": meta.name, **hosted(meta), "epoch": meta.epoch, "result": result}
    else:
        entry = {"name": meta.name, "metric": meta.metric, "epoch": meta.epoch,
                 "result": result}
    if meta.slices is not None:
        entry["slices"] = {"max": meta.slices}
    return entry


def describe(meta: SessionMeta) -> str:
    """The session's metric for a message: `Precision`, or `a collection of [...]`."""
    if meta.metric == COLLECTION:
        return f"a collection of {hosted(meta)['metrics']}"
    return f"metric {meta.metric}"


def _hidden_args(meta: SessionMeta) -> Any:
    """Constructor arguments that Keras leaves out of `get_config` (CosineSimilarity's axis),
    of the metric or of each member: sessions that differ there are different."""
    def hidden(args: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in args.items() if k not in config}
    if meta.metric != COLLECTION:
        return hidden(meta.args, meta.config)
    return [hidden(entry.get("config") or {}, member["config"])
            for entry, member in zip(meta.args["metrics"], meta.config["metrics"], strict=True)]


def window_buckets(meta: SessionMeta, seconds: int) -> int:
    """How many buckets `?window=seconds` spans on this session; 422 when the session has no
    window or `seconds` is not a multiple of its bucket within its span."""
    window = meta.window
    if window is None:
        raise InvalidInput(f"session {meta.name!r} has no window (create it with \"window\": "
                           "{\"bucket_seconds\": B, \"buckets\": K}), so 'window' cannot be "
                           f"asked of it; got window={seconds}")
    span = window.bucket_seconds * window.buckets
    if seconds % window.bucket_seconds or not 1 <= seconds <= span:
        raise InvalidInput(f"'window' must be a multiple of the session's bucket_seconds "
                           f"({window.bucket_seconds}) from {window.bucket_seconds} to {span}; "
                           f"got {seconds}")
    return seconds // window.bucket_seconds


def _slices_text(meta: SessionMeta) -> str:
    return "none" if meta.slices is None else f'{{"max": {meta.slices}}}'


def _window_text(meta: SessionMeta) -> str:
    return "none" if meta.window is None else orjson.dumps(meta.window.as_json()).decode()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    return f"{value!r:.100}"


def _batch(delta: engine.Contribution) -> Batch:
    layout = None if delta.layout is None else canonical_layout(delta.layout)
    return Batch(delta.sum_runs, delta.max_runs, delta.min_runs, delta.samples, layout=layout)


def check_idempotency_key(key: str | None) -> None:
    if key is not None and not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX:
        raise InvalidInput(f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} characters; "
                           f"got {len(key)}")
