"""Sessions: what each endpoint does, between the HTTP layer, the metric engine and the store.

Routes stay thin (parse, authorise, answer); this module holds the rules: names, configs,
which metric a session runs, how a batch becomes increments, how a state becomes a result.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from app.errors import Conflict, InvalidInput, TallyError
from app.metrics import engine
from app.metrics.base import Metric
from app.metrics.registry import REGISTRY, Registry
from app.store.base import (
    Applied,
    Batch,
    ClosedEpoch,
    SessionMeta,
    SessionNotFound,
    Snapshot,
    StaleSession,
    Store,
    canonical_layout,
)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
IDEMPOTENCY_KEY_MAX = 128
PLUGIN_CHECKS = 3  # batches per plugin class and process checked to be pure increments


def valid_name(name: str) -> bool:
    return NAME_PATTERN.fullmatch(name) is not None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(config, option=orjson.OPT_SERIALIZE_NUMPY))


class Sessions:
    """The service's operations on metric sessions."""

    def __init__(self, store: Store, registry: Registry = REGISTRY, *,
                 max_ttl_seconds: int = 365 * 24 * 3600) -> None:
        self.store = store
        self.registry = registry
        self.max_ttl_seconds = max_ttl_seconds
        self._metrics: OrderedDict[bytes, Metric] = OrderedDict()
        self._metas: OrderedDict[str, SessionMeta] = OrderedDict()
        self._verified: dict[type, int] = {}  # plugin class -> batches checked additive

    # -- metric objects ----------------------------------------------------------------
    def metric_for(self, meta: SessionMeta) -> Metric:
        """The metric object a session runs (cached: building one costs more than using it)."""
        key = _canonical([meta.metric, meta.args])
        metric = self._metrics.get(key)
        if metric is None:
            _, metric = self.registry.build(meta.metric, meta.args)
            self._metrics[key] = metric
            if len(self._metrics) > 1024:
                self._metrics.popitem(last=False)
        return metric

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
        metric = self.metric_for(meta)
        return {
            "name": meta.name,
            "metric": meta.metric,
            "config": meta.config,
            "epoch": meta.epoch,
            "variables": engine.describe_variables(metric, meta.layout),
            "created_at": iso(meta.created_at),
            "ttl_seconds": meta.ttl_seconds,
        }

    def result_of(self, meta: SessionMeta, fields: dict[str, float]) -> Any:
        return engine.result_json(self.metric_for(meta), fields, meta.layout)

    async def snapshot(self, name: str) -> Snapshot:
        snap = await self.store.read(name)
        if snap is None:
            raise SessionNotFound(name)
        return snap

    # -- operations --------------------------------------------------------------------
    async def create(self, name: str, metric: str, config: dict[str, Any] | None,
                     ttl_seconds: int | None) -> tuple[dict[str, Any], bool]:
        spec, instance = self.registry.build(metric, config)
        args = _jsonable(config or {})
        full = _jsonable(instance.get_config())
        meta = SessionMeta(name=name, metric=spec.name, args=args, config=full,
                           created_at=time.time(), ttl_seconds=ttl_seconds, id=uuid.uuid4().hex)
        stored, created = await self.store.create(meta)
        if not created and not self._same(stored, meta):
            raise Conflict(
                f"session {name!r} exists with metric {stored.metric} and config "
                f"{orjson.dumps(stored.config).decode()}; this request asks for {meta.metric} "
                f"with config {orjson.dumps(meta.config).decode()}")
        self._metas[name] = stored
        return self.document(stored), created

    @staticmethod
    def _same(a: SessionMeta, b: SessionMeta) -> bool:
        """Equal metric and full config; constructor arguments that Keras leaves out of
        `get_config` (CosineSimilarity's axis) must be equal too."""
        def identity(m: SessionMeta) -> bytes:
            hidden = {k: v for k, v in m.args.items() if k not in m.config}
            return _canonical([m.metric, m.config, hidden])
        return identity(a) == identity(b)

    async def get(self, name: str) -> dict[str, Any]:
        snap = await self.snapshot(name)
        return {**self.document(snap.meta), "result": self.result_of(snap.meta, snap.fields)}

    async def update(self, name: str, inputs: dict[str, np.ndarray],
                     sample_weight: np.ndarray | None, epoch: int | None,
                     idempotency_key: str | None) -> Applied:
        def batch_for(meta: SessionMeta) -> Batch:
            metric = self.metric_for(meta)
            missing = [k for k in metric.inputs if k not in inputs]
            extra = [k for k in inputs if k not in metric.inputs]
            if missing or extra:
                raise InvalidInput(
                    f"{meta.metric} takes {list(metric.inputs)} (and optional sample_weight, "
                    f"epoch); missing {missing}, unexpected {extra}")
            check = self._needs_check(meta, metric)
            delta = engine.contribution(metric, inputs, sample_weight, meta.layout,
                                        check_additive=check)
            if check:
                self._verified[type(metric)] = self._verified.get(type(metric), 0) + 1
            return _batch(delta)
        return await self._apply(name, batch_for, epoch, idempotency_key)

    def _needs_check(self, meta: SessionMeta, metric: Metric) -> bool:
        """A plugin metric's first batches are checked to be pure increments."""
        if self.registry.resolve(meta.metric).builtin:
            return False
        return self._verified.get(type(metric), 0) < PLUGIN_CHECKS

    async def merge(self, name: str, variables: dict[str, Any], epoch: int | None,
                    idempotency_key: str | None) -> Applied:
        def batch_for(meta: SessionMeta) -> Batch:
            delta = engine.merge_contribution(self.metric_for(meta), variables, meta.layout)
            return _batch(delta)
        return await self._apply(name, batch_for, epoch, idempotency_key)

    async def _apply(self, name: str, batch_for: Any, epoch: int | None,
                     idempotency_key: str | None) -> Applied:
        """Compute the batch for the session's metric and apply it in one round trip; if the
        cached meta was stale (session deleted or re-created), refresh it once and retry."""
        check_idempotency_key(idempotency_key)
        for attempt in range(2):
            cached = attempt == 0 and name in self._metas
            meta = await self._meta(name, fresh=attempt > 0)
            try:
                batch: Batch = batch_for(meta)
            except InvalidInput:
                if not cached:
                    raise
                # The cached meta may be of a deleted and re-created session (another shape).
                self._metas.pop(name, None)
                continue
            batch.epoch, batch.idempotency_key, batch.session_id = epoch, idempotency_key, meta.id
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

    async def result(self, name: str) -> dict[str, Any]:
        snap = await self.snapshot(name)
        return {"name": name, "epoch": snap.meta.epoch,
                "result": self.result_of(snap.meta, snap.fields)}

    async def variables(self, name: str) -> dict[str, Any]:
        snap = await self.snapshot(name)
        metric = self.metric_for(snap.meta)
        return {"name": name, "epoch": snap.meta.epoch,
                "variables": engine.variables_json(metric, snap.fields, snap.meta.layout)}

    async def config(self, name: str) -> dict[str, Any]:
        return (await self._meta(name, fresh=True)).config

    async def reset(self, name: str, epoch: int | None) -> dict[str, Any]:
        closed, meta = await self.store.reset(name, epoch)
        return {"epoch": meta.epoch, "closed": self._closed(meta, closed)}

    def _closed(self, meta: SessionMeta, closed: ClosedEpoch) -> dict[str, Any]:
        return {"epoch": closed.epoch, "result": self.result_of(meta, closed.fields),
                "closed_at": iso(closed.closed_at)}

    async def history(self, name: str) -> dict[str, Any]:
        meta = await self._meta(name, fresh=True)
        epochs = await self.store.history(name)
        if epochs is None:
            raise SessionNotFound(name)
        return {"name": name, "epochs": [self._closed(meta, c) for c in epochs]}

    async def delete(self, name: str) -> None:
        self._metas.pop(name, None)
        if not await self.store.delete(name):
            raise SessionNotFound(name)

    async def listing(self, prefix: str) -> list[dict[str, Any]]:
        return [
            {"name": s.meta.name, "metric": s.meta.metric, "epoch": s.meta.epoch,
             "result": self.result_of(s.meta, s.fields)}
            for s in await self.store.list(prefix)
        ]

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


def _batch(delta: engine.Contribution) -> Batch:
    layout = None if delta.layout is None else canonical_layout(delta.layout)
    return Batch(delta.sums, delta.maxes, delta.mins, delta.samples, layout=layout)


def check_idempotency_key(key: str | None) -> None:
    if key is not None and not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX:
        raise InvalidInput(f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} characters; "
                           f"got {len(key)}")
