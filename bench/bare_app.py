"""The baseline: a bare endpoint on the same stack (FastAPI + uvicorn + orjson) that reads
the same JSON body and answers a constant. Tally's update is measured against it."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

app = FastAPI()


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b"{}", media_type="application/json")


@app.put("/v1/sessions/{name}")
async def create(name: str) -> Response:
    return Response(b"{}", media_type="application/json")


@app.post("/v1/sessions/{name}/update")
async def update(name: str, request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(b'{"epoch":0,"samples":0}', media_type="application/json")
