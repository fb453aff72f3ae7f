"""`/v1/metrics`: every metric class a session can host."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import Read, SessionsDep
from app.api.problems import errors
from app.api.responses import JSON
from app.api.schemas import Catalogue

router = APIRouter(prefix="/v1", tags=["catalogue"])


@router.get("/metrics", response_model=Catalogue, responses=errors(401))
async def catalogue(sessions: SessionsDep, _: Read) -> JSON:
    return JSON({"metrics": sessions.catalogue()})
