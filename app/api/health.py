"""Liveness and readiness (GET, and HEAD for probes that only look at the status)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.api.deps import SessionsDep
from app.api.problems import errors
from app.api.responses import JSON
from app.api.schemas import Status
from app.errors import StoreUnavailable
from app.service import Sessions

router = APIRouter(tags=["operations"])
STATUS_ONLY = {"description": "The status says it all (no body)."}


async def ensure_ready(request: Request, sessions: Sessions) -> None:
    """The store answers, and a Redis is in the mode it is configured for (a Cluster node used
    as a plain Redis answers a ping but refuses most keys): else `StoreUnavailable` (503)."""
    probe = getattr(request.app.state, "redis_mode_probe", None)
    if probe is not None:
        mismatch = await probe.mismatch()
        if mismatch:
            raise StoreUnavailable(mismatch)
    await sessions.store.ping()


@router.get("/healthz", response_model=Status)
async def healthz() -> JSON:
    """200 while the process runs."""
    return JSON({"status": "ok"})


@router.head("/healthz", response_class=Response, responses={200: STATUS_ONLY})
async def healthz_head() -> Response:
    """200 while the process runs."""
    return Response()


@router.get("/readyz", response_model=Status, responses=errors(503, 507))
async def readyz(request: Request, sessions: SessionsDep) -> JSON:
    """200 when the store answers and takes writes; else 503 (unreachable) or 507 (full)."""
    await ensure_ready(request, sessions)
    return JSON({"status": "ready"})


@router.head("/readyz", response_class=Response,
             responses={200: STATUS_ONLY, **errors(503, 507)})
async def readyz_head(request: Request, sessions: SessionsDep) -> Response:
    """200 when the store answers, else 503."""
    await ensure_ready(request, sessions)
    return Response()
