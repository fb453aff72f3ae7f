"""The baselines: bare endpoints on Tally's stack (FastAPI + uvicorn + orjson), no store.

* `POST /v1/sessions/{name}/update` parses the same JSON body with orjson and answers 204:
  the floor for an update (HTTP, routing, reading and parsing the body).
* `GET /v1/sessions/{name}/result` answers a constant small JSON, the size of Tally's answer:
  the floor for a read.
* `POST /v1/sessions/{name}/body` only reads the body (any content type) and answers 204: the
  transport floor of a large update (HTTP and reading, say, an 8 MB `.npz`; no decoding).

The benchmarks measure Tally's routes against these in the same run (bench/run_all.py).
Like Tally's server, this one lets malloc keep freed memory (app/allocator.py, the same
`TALLY_ALLOCATOR_KEEP_BYTES`) and freezes its start-up objects out of the garbage collector's
reach (app/startup.py): process settings of the stack, not Tally's own work.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from app.allocator import keep_freed_memory
from app.settings import Settings
from app.startup import freeze_startup_objects

keep_freed_memory(Settings().allocator_keep_bytes)
app = FastAPI()

RESULT = b'{"name":"bench","epoch":0,"result":0.5}'


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b"{}", media_type="application/json")


@app.put("/v1/sessions/{name}")
async def create(name: str) -> Response:
    return Response(b"{}", media_type="application/json")


@app.post("/v1/sessions/{name}/update")
async def update(name: str, request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(status_code=204)


@app.post("/v1/sessions/{name}/body")
async def body(name: str, request: Request) -> Response:
    await request.body()
    return Response(status_code=204)


@app.get("/v1/sessions/{name}/result")
async def result(name: str) -> Response:
    return Response(RESULT, media_type="application/json")


freeze_startup_objects()  # once every route is defined

