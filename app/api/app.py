"""The application factory: settings in, a FastAPI app with its store and routers out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from app.api import catalogue, dashboard, docs, health, problems, sessions
from app.api.direct import DirectDispatch
from app.api.prometheus import HttpMetricsMiddleware, request_metrics
from app.api.prometheus import router as prometheus_router
from app.metrics.plugins import load_plugins, log_loaded
from app.metrics.registry import builtin_registry
from app.openapi import tally_openapi
from app.service import Sessions
from app.settings import Settings
from app.startup import RedisModeProbe
from app.store.base import Store
from app.store.memory import MemoryStore
from app.store.redis import RedisStore

log = logging.getLogger("tally")


def make_store(settings: Settings) -> Store:
    if settings.redis_url:
        return RedisStore.from_url(
            settings.redis_url, cluster=settings.redis_cluster,
            timeout=settings.redis_timeout_seconds, history_limit=settings.history_limit,
            max_connections=settings.redis_max_connections,
            idempotency_ttl=settings.idempotency_ttl_seconds,
            idempotency_keys=settings.max_idempotency_keys,
            replica_acks=settings.redis_replica_acks,
            replica_timeout=settings.redis_replica_timeout_seconds,
            group_commit=settings.group_commit)
    return MemoryStore(history_limit=settings.history_limit,
                       idempotency_ttl=settings.idempotency_ttl_seconds,
                       idempotency_keys=settings.max_idempotency_keys)


class TallyApp(FastAPI):
    """FastAPI, with the hot routes answered in front of it.

    FastAPI runs every request through its telemetry check (three provider lookups in the
    environment), its own middlewares (server errors, telemetry, body limits) and the
    user's before the router. `DirectDispatch` answers the two hot routes before all of
    that, with the same answers (its errors become the same problem documents) counted in
    the same request metrics; every other request, and the lifespan, go to FastAPI as
    usual. (So FastAPI's native OpenTelemetry instrumentation, off unless a provider is
    configured, does not see the hot routes; Tally's Prometheus series count them.)"""

    _direct: DirectDispatch | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        direct = self._direct
        if direct is None:  # the routes and the request metrics are in place by now
            direct = self._direct = DirectDispatch(
                partial(FastAPI.__call__, self), sessions.router.routes,
                self.state.http_metrics)
        scope["app"] = self
        await direct(scope, receive, send)


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The app. Plugins load here, not at the first request nor in the lifespan, so that one
    that does not load stops the start-up with its own message (`ConfigError`)."""
    settings = settings or Settings()
    registry = builtin_registry()
    plugins = load_plugins(registry, settings.plugin_modules())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = store or make_store(settings)
        probe = RedisModeProbe(settings) if store is None and settings.redis_url else None
        app.state.settings = settings
        app.state.sessions = Sessions(
            owned, registry, max_ttl_seconds=settings.max_ttl_seconds,
            max_state_elements=settings.max_state_elements,
            metric_cache_bytes=settings.metric_cache_bytes,
            worker_threads=settings.worker_threads,
            max_window_buckets=settings.max_window_buckets,
            max_window_elements=settings.max_window_elements,
            max_slices=settings.max_slices,
            merge_updates=settings.merge_updates)
        app.state.redis_mode_probe = probe
        log_loaded(plugins)
        if not settings.tokens:
            log.warning("TALLY_TOKENS is not set: the API is open to anyone who can reach it")
        if not settings.redis_url:
            log.warning("TALLY_REDIS_URL is not set: using the in-memory store (one process; "
                        "state is lost on restart)")
        try:
            yield
        finally:
            await owned.close()
            if probe is not None:
                await probe.close()

    app = TallyApp(title="Tally", version="1.1",
                   description="Keras-exact streaming metrics as a service. Errors are RFC "
                               "9457 problem documents (application/problem+json). The "
                               "contract is docs/API.md in Tally's source repository.",
                   lifespan=lifespan, docs_url=None, redoc_url=None)
    problems.install(app)
    docs.install(app)
    for router in (sessions.router, catalogue.router, health.router, dashboard.router):
        app.include_router(router)
    app.include_router(prometheus_router)
    app.state.http_metrics = request_metrics()
    app.add_middleware(HttpMetricsMiddleware, metrics=app.state.http_metrics)
    app.openapi = lambda: tally_openapi(app)  # type: ignore[method-assign]
    return app
