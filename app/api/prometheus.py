"""`GET /metrics`: the sessions' results and the service's own requests, for Prometheus.

Two kinds of series:

- Sessions, read from the store at each scrape through the paged listing (the caller's token
  prefix applies): `tally_session_result{session,metric}` for every session whose result is
  a number (a collection's members as `{session,member}`), `tally_session_epoch{session}` for
  every session, at most `TALLY_METRICS_MAX_SESSIONS` sessions in name order
  (`tally_sessions_truncated` says when more exist), and `tally_store_up` (0 when the store
  did not answer: the request series are still served, so a scrape shows the outage).
- Slices of those sessions: `tally_slice_result{session,metric,slice}` (a collection's
  members as `{session,member,slice}`), one read per sliced session, at most
  `TALLY_METRICS_MAX_SLICE_SERIES` samples in all (`tally_slices_truncated` says when more
  exist): a slice per country of a few sessions, not an unbounded label.
- Requests, counted by `HttpMetricsMiddleware` in the process that serves them:
  `tally_http_requests_total{method,route,status}`,
  `tally_http_request_duration_seconds{method,route}` (a histogram) and
  `tally_http_requests_in_progress`. With several worker processes they count in
  prometheus_client's multi-process files (see `app.prometheus_dir`), summed at each scrape
  by whichever worker answers it.

A result that is null in JSON (NaN, or a lazily built metric before its first batch) is
exported as NaN rather than left out: the series of a session then exists from its creation
to its deletion, so `count(tally_session_result)` counts sessions and a graph shows a gap
where the value is undefined; PromQL comparisons with NaN are false, so alerts stay quiet.
Results that are arrays (per-class results) are not exported.
"""

from __future__ import annotations

import math
import os
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from time import perf_counter
from typing import Any, Protocol

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.deps import Read, SessionsDep, SettingsDep
from app.api.problems import errors
from app.errors import TallyError
from app.prometheus_dir import VARIABLE, process_alive
from app.service import Sessions

router = APIRouter(tags=["operations"])

#: A listing page, as large as the listing allows.
PAGE = 1000
#: The label of requests whose path matches no route (one label: bounded cardinality).
UNMATCHED = "<unmatched>"
#: Methods outside this set are counted as OTHER (any token is a valid HTTP method).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
#: From 1 ms (a cached result) to 10 s (a large batch on a slow store).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_WORKER_FILE = re.compile(r"_(\d+)\.db$")

# The `_created` series (when each label set was first seen) exist only in single-process
# mode; without them the exposition has the same series with one worker or several.
disable_created_metrics()


# -- the service's own requests ------------------------------------------------------------
REQUESTS = ("tally_http_requests", "HTTP requests answered, by method, route template and "
            "status")
DURATION = ("tally_http_request_duration_seconds", "Time from a request's arrival to the end "
            "of its answer, by method and route template")
IN_PROGRESS = ("tally_http_requests_in_progress", "HTTP requests being answered")


class RequestMetrics(Protocol):
    """What the request counting (`HttpMetricsMiddleware`, `DirectDispatch`) and a scrape
    need of the request series."""

    @property
    def collectors(self) -> tuple[Collector, ...]: ...

    def started(self) -> float: ...

    def finished(self, scope: Scope, status: int, started: float) -> None: ...


def request_metrics() -> RequestMetrics:
    """The request series of one app: counted in shared files when several worker processes
    serve (`HttpMetrics`), else in this process's own numbers (`LocalHttpMetrics`)."""
    return HttpMetrics() if multiprocess_directory() is not None else LocalHttpMetrics()


class HttpMetrics:
    """The request series of one app in prometheus_client's objects: in multi-process mode
    their values live in the shared files. Each app has its own objects (not the global
    registry), so apps built in one process (tests) count separately."""

    def __init__(self) -> None:
        self.requests = Counter(*REQUESTS, ("method", "route", "status"), registry=None)
        self.duration = Histogram(*DURATION, ("method", "route"), buckets=BUCKETS,
                                  registry=None)
        self.in_progress = Gauge(*IN_PROGRESS, registry=None, multiprocess_mode="livesum")
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    @property
    def collectors(self) -> tuple[Collector, ...]:
        return self.requests, self.duration, self.in_progress

    def started(self) -> float:
        """A request is being answered: the in-progress gauge up; its start time."""
        self.in_progress.inc()
        return perf_counter()

    def finished(self, scope: Scope, status: int, started: float) -> None:
        """The request that `started` is answered with `status`: the gauge down, counted."""
        self.in_progress.dec()
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        self.observe(method, route_template(scope), status, perf_counter() - started)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # once per label set: `labels()` validates and locks
            children = (self.requests.labels(method, route, str(status)),
                        self.duration.labels(method, route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class LocalHttpMetrics:
    """The same series as `HttpMetrics`, for one process, in plain numbers: a request costs a
    few dictionary updates and a `bisect` instead of prometheus_client's locked values (1.4
    against 2.6 us, `python -m bench.prometheus_middleware`). Only the event loop's thread
    counts and scrapes, so no lock is needed. A scrape exposes exactly what `HttpMetrics`
    would for the same requests (the tests compare the two)."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, str], int] = {}
        #: Per (method, route): the count of each bucket (the last one +Inf), then the sum.
        self._durations: dict[tuple[str, str], list[float]] = {}
        self._in_progress = 0

    @property
    def collectors(self) -> tuple[Collector, ...]:
        return (self,)

    def started(self) -> float:
        self._in_progress += 1
        return perf_counter()

    def finished(self, scope: Scope, status: int, started: float) -> None:
        self._in_progress -= 1
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        self.observe(method, route_template(scope), status, perf_counter() - started)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        self._requests[key] = self._requests.get(key, 0) + 1
        pair = (method, route)
        counts = self._durations.get(pair)
        if counts is None:
            counts = self._durations[pair] = [0.0] * (len(BUCKETS) + 2)
        counts[bisect_left(BUCKETS, seconds)] += 1  # the first bound >= seconds: `le`
        counts[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(*REQUESTS, labels=("method", "route", "status"))
        for key, count in self._requests.items():
            requests.add_metric(key, count)
        duration = HistogramMetricFamily(*DURATION, labels=("method", "route"))
        bounds = [floatToGoString(b) for b in BUCKETS] + ["+Inf"]
        for pair, counts in self._durations.items():
            cumulative = list(accumulate(counts[:-1]))
            duration.add_metric(pair, list(zip(bounds, cumulative, strict=True)), counts[-1])
        yield requests
        yield duration
        yield GaugeMetricFamily(*IN_PROGRESS, value=self._in_progress)


def route_template(scope: Scope) -> str:
    """The matched route's template (`/v1/sessions/{name}/update`), never the raw path."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED


class HttpMetricsMiddleware:
    """Counts and times every HTTP request. A plain ASGI middleware (no BaseHTTPMiddleware,
    which costs a task and a stream per request): two clock reads, a wrapped `send`, one
    counter increment, one histogram observation, and the in-progress gauge up and down.

    A request is counted just before the last part of its answer is handed to the server, so
    an answer a client has received is already in the counts (a scrape that follows it sees
    it, whichever worker answers). The route is the `route` the router put in the scope. An
    app that fails before answering is counted as the 500 the server then sends."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        counted = False
        started = self.metrics.started()

        def count() -> None:
            nonlocal counted
            counted = True
            self.metrics.finished(scope, status, started)

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                count()
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            if not counted:
                count()


def multiprocess_directory() -> Path | None:
    """The shared directory when the request series count in multi-process mode."""
    given = os.environ.get(VARIABLE)
    return Path(given) if given else None


def forget_dead_workers(directory: Path) -> None:
    """`mark_process_dead` for every worker whose files remain but which is gone (killed,
    crashed, restarted by uvicorn): its in-progress gauge would otherwise count forever. Its
    counters and histograms stay: what it answered was answered, and the totals must not go
    down when a worker is replaced."""
    pids = {int(m[1]) for f in directory.glob("gauge_live*.db")
            if (m := _WORKER_FILE.search(f.name))}
    for pid in pids:
        if not process_alive(pid):
            mark_process_dead(pid, str(directory))


# -- the sessions --------------------------------------------------------------------------
def scalar(value: Any) -> float | None:
    """A result as a sample value: numbers as floats, null (undefined) as NaN, anything else
    (arrays) None, meaning not exported."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def result_samples(entry: Mapping[str, Any], result: Any = None,
                   extra: Mapping[str, str] | None = None
                   ) -> Iterator[tuple[dict[str, str], float]]:
    """The labels and values of `tally_session_result` for one listing entry (or, with
    `result` and `extra` labels, of one of its slices): one sample for a single metric; one
    per member when the result is an object of member results (a metric collection)."""
    name = entry["name"]
    result = entry["result"] if extra is None else result
    if isinstance(result, Mapping):
        for member, value in result.items():
            number = scalar(value)
            if number is not None:
                yield {"session": name, "member": str(member), **(extra or {})}, number
        return
    number = scalar(result)
    if number is not None:
        yield {"session": name, "metric": str(entry.get("metric", "")), **(extra or {})}, number


@dataclass
class SessionPage:
    """The sessions a scrape exports, and whether more exist or the store failed."""

    entries: list[dict[str, Any]]
    truncated: bool = False
    store_up: bool = True


async def exported_sessions(sessions: Sessions, limit: int, grant_prefix: str) -> SessionPage:
    """At most `limit` sessions in name order, through the listing's pages. Each page asks
    for one more than still wanted, so that a full last page tells if more exist."""
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    try:
        while True:
            wanted = limit - len(entries)
            page = await sessions.listing("", cursor, min(PAGE, wanted + 1), grant_prefix)
            entries.extend(page["sessions"][:wanted])
            if len(page["sessions"]) > wanted:
                return SessionPage(entries, truncated=True)
            cursor = page["next_cursor"]
            if cursor is None:
                return SessionPage(entries)
    except TallyError as exc:
        if exc.status < 500:
            raise
        return SessionPage(entries, store_up=False)


@dataclass
class SliceSamples:
    """The slice results a scrape exports, and whether more exist."""

    samples: list[tuple[dict[str, str], float]]
    truncated: bool = False


async def exported_slices(sessions: Sessions, page: SessionPage, limit: int) -> SliceSamples:
    """The slices' results of the exported sessions that are sliced, in name order, at most
    `limit` samples. A session gone (or a store failing) since the listing is skipped: the
    session series of this scrape already say what is there."""
    out: list[tuple[dict[str, str], float]] = []
    for entry in page.entries:
        if not entry.get("slices") or not page.store_up:
            continue
        try:
            found = await sessions.slices(entry["name"])
        except TallyError:
            continue
        for value, result in found["slices"].items():
            for sample in result_samples(entry, result, {"slice": value}):
                if len(out) == limit:
                    return SliceSamples(out, truncated=True)
                out.append(sample)
    return SliceSamples(out)


def slice_families(slices: SliceSamples, limit: int) -> list[Metric]:
    cut = (f" Truncated: only the first {limit} samples are exported "
           "(TALLY_METRICS_MAX_SLICE_SERIES)." if slices.truncated else "")
    result = Metric("tally_slice_result", "Each slice's current result in a sliced session; "
                    "NaN when undefined; a collection's members by member." + cut, "gauge")
    for labels, value in slices.samples:
        result.add_sample("tally_slice_result", labels, value)
    truncated = GaugeMetricFamily("tally_slices_truncated", "1 when more slice results exist "
                                  "than TALLY_METRICS_MAX_SLICE_SERIES and only the first are "
                                  "exported", value=float(slices.truncated))
    return [result, truncated]


def session_families(page: SessionPage, limit: int) -> list[Metric]:
    cut = (f" Truncated: only the first {limit} sessions by name are exported "
           "(TALLY_METRICS_MAX_SESSIONS)." if page.truncated else "")
    result = Metric("tally_session_result", "Each session's current result (Keras result()); "
                    "NaN when undefined; a collection's members by member." + cut, "gauge")
    epoch = GaugeMetricFamily("tally_session_epoch", "Each session's current epoch (resets "
                              "so far)." + cut, labels=("session",))
    for entry in page.entries:
        for labels, value in result_samples(entry):
            result.add_sample("tally_session_result", labels, value)
        epoch.add_metric((entry["name"],), entry["epoch"])
    truncated = GaugeMetricFamily("tally_sessions_truncated", "1 when more sessions exist than "
                                  "TALLY_METRICS_MAX_SESSIONS and only the first are exported",
                                  value=float(page.truncated))
    store_up = GaugeMetricFamily("tally_store_up", "1 when the store answered the listing of "
                                 "this scrape, else 0 (the session series are then missing)",
                                 value=float(page.store_up))
    return [result, epoch, truncated, store_up]


class Families:
    """Ready metric families as a collector."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def scrape_registry(http: RequestMetrics, sessions: Iterable[Metric]) -> CollectorRegistry:
    """A registry for one scrape: the request series (this process's, or every worker's
    files summed) and the session families."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_directory()
    if directory is None:
        for collector in http.collectors:
            registry.register(collector)
    else:
        forget_dead_workers(directory)
        MultiProcessCollector(registry, path=str(directory))
    registry.register(Families(sessions))
    return registry


EXPOSITION: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text exposition (OpenMetrics when the Accept header asks "
                         "for it)",
          "content": {"text/plain": {"schema": {"type": "string"}},
                      "application/openmetrics-text": {"schema": {"type": "string"}}}},
}


@router.get("/metrics", summary="Prometheus exposition", response_class=Response,
            responses={**EXPOSITION, **errors(401)},
            openapi_extra={"security": [{"bearer": []}]})
async def metrics(request: Request, sessions: SessionsDep, settings: SettingsDep,
                  grant: Read) -> Response:
    """Prometheus series: each session's result and epoch (those the token's prefix covers, at
    most TALLY_METRICS_MAX_SESSIONS), their slices' results (at most
    TALLY_METRICS_MAX_SLICE_SERIES), and the service's request counts and latencies."""
    limit = settings.metrics_max_sessions
    page = await exported_sessions(sessions, limit, grant.prefix if grant else "")
    slices = await exported_slices(sessions, page, settings.metrics_max_slice_series)
    families = session_families(page, limit) + slice_families(
        slices, settings.metrics_max_slice_series)
    registry = scrape_registry(request.app.state.http_metrics, families)
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(registry), media_type=content_type)
