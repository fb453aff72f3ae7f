"""`TallyClient` and `AsyncTallyClient`: every endpoint of the HTTP API (shared/API.md 1.1).

Both are thin: each method builds a `Call` with the shared core (`_core.py`) and sends it with
the shared retry decisions (`retry.py`); only the sending (blocking or awaited) differs.
Answers are the service's JSON documents as dicts; errors are `tally_client.errors` types.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, TypeVar

import httpx

from tally_client import _core
from tally_client._core import DEFAULT_NPZ_THRESHOLD, Call, SliceValue, outcome
from tally_client.errors import TallyError
from tally_client.retry import Attempts, RetryPolicy, as_policy

T = TypeVar("T")
Json = dict[str, Any]
DEFAULT_TIMEOUT = 10.0


class _Options:
    """Settings common to both clients."""

    def __init__(self, url: str, token: str | None, retries: RetryPolicy | int | None,
                 npz_threshold: int) -> None:
        self.url = url.rstrip("/")
        self.retries = as_policy(retries)
        self.npz_threshold = npz_threshold
        self.headers = {"Accept": "application/json, application/problem+json",
                        "User-Agent": "tally-client/0.1"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def update_call(self, name: str, y_true: Any, y_pred: Any, sample_weight: Any,
                    values: Any, epoch: int | None, slice: SliceValue | None, slices: Any,
                    idempotency_key: str | None) -> Call[Json]:
        fields = {"y_true": y_true, "y_pred": y_pred, "values": values,
                  "sample_weight": sample_weight}
        return _core.update(name, fields, epoch=epoch, slice=slice, slices=slices,
                            idempotency_key=idempotency_key, npz_threshold=self.npz_threshold)


class TallyClient:
    """A blocking client. `transport` replaces httpx's network transport (tests pass
    `httpx.MockTransport` or a WSGI/ASGI bridge); `retries` is a `RetryPolicy` or a number
    of retries. Thread-safe (one connection pool, shared)."""

    def __init__(self, url: str, token: str | None = None, *,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None,
                 retries: RetryPolicy | int | None = None,
                 npz_threshold: int = DEFAULT_NPZ_THRESHOLD) -> None:
        self.options = _Options(url, token, retries, npz_threshold)
        self._http = httpx.Client(base_url=self.options.url, headers=self.options.headers,
                                  timeout=timeout, transport=transport)

    def _run(self, call: Call[T]) -> T:
        attempts = Attempts(self.options.retries, call)
        while True:
            attempts.attempt()
            try:
                return outcome(call, self._http.send(call.request(self._http)))
            except (TallyError, httpx.TransportError) as exc:
                delay = attempts.failed(exc)
            time.sleep(delay)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TallyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- sessions --
    def create(self, name: str, metric: str | None = None,
               config: Mapping[str, Any] | None = None, *,
               metrics: list[Mapping[str, Any]] | None = None,
               window: Mapping[str, Any] | None = None,
               slices: int | Mapping[str, Any] | None = None,
               ttl_seconds: int | None = None) -> Json:
        """Create (or find, with an equal config) a session; its document. `slices=M`: keep
        a result per slice value too, at most M distinct values (part of the identity)."""
        return self._run(_core.create(name, metric, config, metrics=metrics, window=window,
                                      slices=slices, ttl_seconds=ttl_seconds))

    def get(self, name: str) -> Json:
        return self._run(_core.get(name))

    def delete(self, name: str) -> None:
        self._run(_core.delete(name))

    def list_sessions(self, prefix: str = "", *, limit: int | None = None,
                      cursor: str | None = None) -> Json:
        """One page: `{"sessions": [...], "next_cursor": ...}`."""
        return self._run(_core.list_page(prefix, limit, cursor))

    def iter_sessions(self, prefix: str = "", *, page_size: int | None = None) -> Iterator[Json]:
        """Every session under `prefix`, following `next_cursor` page after page."""
        cursor: str | None = None
        while True:
            page = self.list_sessions(prefix, limit=page_size, cursor=cursor)
            yield from page.get("sessions", [])
            cursor = _core.next_cursor(page)
            if cursor is None:
                return

    # -- metric calls --
    def update(self, name: str, y_true: Any = None, y_pred: Any = None,
               sample_weight: Any = None, *, values: Any = None, epoch: int | None = None,
               slice: SliceValue | None = None, slices: Any = None,
               idempotency_key: str | None = None) -> Json:
        """`update_state` with one batch: `{"epoch", "samples"}`. `slice`: the slice value
        of the whole batch; `slices`: a value per sample (strings or integers), not both.
        Carries an Idempotency-Key (a new uuid4 unless given), the same on every retry."""
        return self._run(self.options.update_call(name, y_true, y_pred, sample_weight, values,
                                                  epoch, slice, slices, idempotency_key))

    def merge(self, name: str, variables: Mapping[str, Any], *, epoch: int | None = None,
              slice: SliceValue | None = None, idempotency_key: str | None = None) -> Json:
        """Add pre-aggregated variables; with `slice`, to that slice and the overall."""
        return self._run(_core.merge(name, variables, epoch=epoch, slice=slice,
                                     idempotency_key=idempotency_key))

    def result(self, name: str, *, window: float | None = None,
               slice: SliceValue | None = None) -> Json:
        """`{"name", "epoch", "result"}`; with `window` (seconds) that window's result
        (`"window_seconds"`), with `slice` that slice's (`"slice"`; `NotFound` when the
        epoch has not seen it)."""
        return self._run(_core.result(name, window=window, slice=slice))

    def slices(self, name: str, *, window: float | None = None) -> Json:
        """`{"name", "epoch", "slices": {"<value>": <result>, ...}}` (values as strings); with
        `window` (seconds), over that window of a windowed session."""
        return self._run(_core.slices(name, window=window))

    def variables(self, name: str, *, slice: SliceValue | None = None) -> Json:
        """`{"name", "epoch", "variables"}`: the overall state's, or with `slice` that
        slice's (`"slice"` too)."""
        return self._run(_core.variables(name, slice=slice))

    def reset(self, name: str, *, epoch: int | None = None) -> Json:
        return self._run(_core.reset(name, epoch=epoch))

    def config(self, name: str) -> Json:
        return self._run(_core.config(name))

    def history(self, name: str) -> Json:
        return self._run(_core.history(name))

    # -- service --
    def catalogue(self) -> Json:
        return self._run(_core.catalogue())

    def health(self) -> Json:
        return self._run(_core.health())

    def ready(self) -> bool:
        return self._run(_core.ready())


class AsyncTallyClient:
    """The asyncio twin of `TallyClient`: same methods, awaited."""

    def __init__(self, url: str, token: str | None = None, *,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None,
                 retries: RetryPolicy | int | None = None,
                 npz_threshold: int = DEFAULT_NPZ_THRESHOLD) -> None:
        self.options = _Options(url, token, retries, npz_threshold)
        self._http = httpx.AsyncClient(base_url=self.options.url, headers=self.options.headers,
                                       timeout=timeout, transport=transport)

    async def _run(self, call: Call[T]) -> T:
        attempts = Attempts(self.options.retries, call)
        while True:
            attempts.attempt()
            try:
                return outcome(call, await self._http.send(call.request(self._http)))
            except (TallyError, httpx.TransportError) as exc:
                delay = attempts.failed(exc)
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncTallyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def create(self, name: str, metric: str | None = None,
                     config: Mapping[str, Any] | None = None, *,
                     metrics: list[Mapping[str, Any]] | None = None,
                     window: Mapping[str, Any] | None = None,
                     slices: int | Mapping[str, Any] | None = None,
                     ttl_seconds: int | None = None) -> Json:
        return await self._run(_core.create(name, metric, config, metrics=metrics,
                                            window=window, slices=slices,
                                            ttl_seconds=ttl_seconds))

    async def get(self, name: str) -> Json:
        return await self._run(_core.get(name))

    async def delete(self, name: str) -> None:
        await self._run(_core.delete(name))

    async def list_sessions(self, prefix: str = "", *, limit: int | None = None,
                            cursor: str | None = None) -> Json:
        return await self._run(_core.list_page(prefix, limit, cursor))

    async def iter_sessions(self, prefix: str = "", *,
                            page_size: int | None = None) -> AsyncIterator[Json]:
        cursor: str | None = None
        while True:
            page = await self.list_sessions(prefix, limit=page_size, cursor=cursor)
            for session in page.get("sessions", []):
                yield session
            cursor = _core.next_cursor(page)
            if cursor is None:
                return

    async def update(self, name: str, y_true: Any = None, y_pred: Any = None,
                     sample_weight: Any = None, *, values: Any = None,
                     epoch: int | None = None, slice: SliceValue | None = None,
                     slices: Any = None, idempotency_key: str | None = None) -> Json:
        return await self._run(self.options.update_call(
            name, y_true, y_pred, sample_weight, values, epoch, slice, slices, idempotency_key))

    async def merge(self, name: str, variables: Mapping[str, Any], *, epoch: int | None = None,
                    slice: SliceValue | None = None,
                    idempotency_key: str | None = None) -> Json:
        return await self._run(_core.merge(name, variables, epoch=epoch, slice=slice,
                                           idempotency_key=idempotency_key))

    async def result(self, name: str, *, window: float | None = None,
                     slice: SliceValue | None = None) -> Json:
        return await self._run(_core.result(name, window=window, slice=slice))

    async def slices(self, name: str, *, window: float | None = None) -> Json:
        return await self._run(_core.slices(name, window=window))

    async def variables(self, name: str, *, slice: SliceValue | None = None) -> Json:
        return await self._run(_core.variables(name, slice=slice))

    async def reset(self, name: str, *, epoch: int | None = None) -> Json:
        return await self._run(_core.reset(name, epoch=epoch))

    async def config(self, name: str) -> Json:
        return await self._run(_core.config(name))

    async def history(self, name: str) -> Json:
        return await self._run(_core.history(name))

    async def catalogue(self) -> Json:
        return await self._run(_core.catalogue())

    async def health(self) -> Json:
        return await self._run(_core.health())

    async def ready(self) -> bool:
        return await self._run(_core.ready())
