"""Metric objects for requests to borrow, one request (or worker thread) at a time.

Building a metric costs more than using it, so idle objects are kept per (class, arguments).
An object is mutated by every batch and every read (`update_state`, `load_state`), so it is
never shared: a request borrows one for its exclusive use and gives it back. Idle objects are
bounded by the bytes their arrays hold, not by count (one `MeanIoU(2048)` holds ~50 MB); an
object larger than half the budget is not kept at all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from app.metrics.base import Metric
from app.metrics.collection import build_metric
from app.metrics.registry import Registry


def metric_key(metric: str, args: dict[str, Any]) -> bytes:
    return orjson.dumps([metric, args], option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def footprint(metric: Metric) -> int:
    """Bytes the metric's arrays hold (value and initial value of every variable)."""
    return sum(v.value.nbytes + v.initial_value.nbytes for v in metric.variables) + 4096


class MetricPool:
    def __init__(self, registry: Registry, max_bytes: int, state_limit: int | None = None,
                 max_objects: int = 1024) -> None:
        self.registry = registry
        self.max_bytes = max_bytes
        self.state_limit = state_limit
        self.max_objects = max_objects
        self._idle: dict[bytes, list[tuple[int, Metric, int]]] = {}  # (serial, object, bytes)
        self._order: OrderedDict[int, bytes] = OrderedDict()  # serial -> key, oldest first
        self._bytes = 0
        self._serial = 0
        self._lock = threading.Lock()

    @property
    def idle_bytes(self) -> int:
        return self._bytes

    def build(self, metric: str, args: dict[str, Any]) -> Metric:
        _, instance = build_metric(self.registry, metric, args)  # a class, or a collection
        instance.limit_state(self.state_limit)
        return instance

    @contextmanager
    def borrow(self, metric: str, args: dict[str, Any]) -> Iterator[Metric]:
        key = metric_key(metric, args)
        instance = self._take(key) or self.build(metric, args)
        try:
            yield instance
        finally:
            self._give_back(key, instance)

    def _take(self, key: bytes) -> Metric | None:
        with self._lock:
            idle = self._idle.get(key)
            if not idle:
                return None
            serial, instance, size = idle.pop()  # the most recently returned
            del self._order[serial]
            self._bytes -= size
            return instance

    def _give_back(self, key: bytes, instance: Metric) -> None:
        instance.reset_state()
        size = footprint(instance)
        if size > self.max_bytes // 2:
            return
        with self._lock:
            self._serial += 1
            self._idle.setdefault(key, []).append((self._serial, instance, size))
            self._order[self._serial] = key
            self._bytes += size
            while self._order and (self._bytes > self.max_bytes
                                   or len(self._order) > self.max_objects):
                self._evict_oldest()

    def _evict_oldest(self) -> None:
        serial, key = self._order.popitem(last=False)
        idle = self._idle[key]
        for i, (s, _, size) in enumerate(idle):
            if s == serial:
                del idle[i]
                self._bytes -= size
                break
        if not idle:
            del self._idle[key]
