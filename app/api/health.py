"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import SessionsDep
from app.api.responses import JSON

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> JSON:
    """200 while the process runs."""
    return JSON({"status": "ok"})


@router.get("/readyz")
async def readyz(sessions: SessionsDep) -> JSON:
    """200 when the store answers, else 503 (a `StoreUnavailable` problem)."""
    await sessions.store.ping()
    return JSON({"status": "ready"})
