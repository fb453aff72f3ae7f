"""A listing page's results: the cached ones as they are, the others computed per metric kind.

A page is often a thousand sessions of a few kinds (metric, arguments, layout), and a
dashboard polling while every session trains finds none of them cached. So the uncached
sessions are grouped by kind, and each kind whose metric declares it gets its results from
one stacked `result()` (engine.stacked_results); the rest get one `result()` each from one
borrowed metric per (class, arguments), not one per session. A page's work is a few passes
over its sessions (a thousand Python-level steps cost about a millisecond each pass), so the
grouping gives each session its row index, not a dict by name.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import orjson

from app.metric_pool import MetricPool, metric_key
from app.metrics import engine
from app.metrics.base import Metric
from app.result_cache import MISS
from app.store.base import SessionMeta, Snapshot
from app.store.state import State

#: Whether a kind's results may come from one stacked call (plugins may not: a plugin that
#: subclasses Mean inherits its declaration, not necessarily its elementwise result).
Stackable = Callable[[SessionMeta, Metric], bool]


def page_results(listed: list[tuple[Snapshot, Any]], metrics: MetricPool,
                 stackable: Stackable) -> tuple[list[Any], list[tuple[SessionMeta, State, Any]]]:
    """Each listed session's result (its cached one, or MISS in `listed`, computed here), and
    (meta, state, result) of those computed here, in page order, for the result cache."""
    results = [result for _, result in listed]
    kinds: dict[tuple[bytes, bytes], list[int]] = {}
    for row, (snap, result) in enumerate(listed):
        if result is MISS:
            meta = snap.meta
            kind = (metric_key(meta.metric, meta.args), orjson.dumps(meta.layout))
            kinds.setdefault(kind, []).append(row)
    if not kinds:
        return results, []
    with ExitStack() as stack:
        borrowed: dict[bytes, Metric] = {}  # one metric per (class, arguments), any layout
        for (key, _), rows in kinds.items():
            first = listed[rows[0]][0].meta
            if key not in borrowed:
                borrowed[key] = stack.enter_context(metrics.borrow(first.metric, first.args))
            metric = borrowed[key]
            states = [listed[row][0].state for row in rows]
            computed = None
            if len(rows) > 1 and stackable(first, metric):
                computed = engine.stacked_results(metric, states, first.layout)
            if computed is None:
                computed = [engine.result_json(metric, state, first.layout) for state in states]
            for row, result in zip(rows, computed, strict=True):
                results[row] = result
    fresh = [(snap.meta, snap.state, results[row])
             for row, (snap, cached) in enumerate(listed) if cached is MISS]
    return results, fresh
