"""`/v1/sessions`: create, read, update, merge, reset and delete metric sessions."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Header, Query, Request, Response

from app.api import codecs
from app.api.deps import Admin, Read, SessionsDep, SettingsDep, Write, require
from app.api.direct import DirectRoute, bind
from app.api.problems import errors
from app.api.responses import JSON
from app.api.schemas import (
    CREATE_BODY,
    MERGE_BODY,
    RESET_BODY,
    UPDATE_BODY,
    Applied,
    ConfigDoc,
    History,
    ResetAnswer,
    ResultDoc,
    SessionDoc,
    SessionList,
    SessionWithResult,
    SlicesDoc,
    VariablesDoc,
)
from app.errors import InvalidInput, NotFound
from app.service import valid_name
from app.slicing import from_fields, one_value
from app.store.base import Applied as AppliedOutcome

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], route_class=DirectRoute)

UPDATE_FIELDS = ("y_true", "y_pred", "values")
MAX_EPOCH = 2**53 - 1  # Redis Lua numbers are doubles: larger integers are not exact
WINDOW_QUERY = ("seconds, a multiple of the session's bucket_seconds up to bucket_seconds x "
                "buckets: the result over the current bucket and the ones before it")
SLICE_QUERY = "a slice value: the result over the epoch's samples of that slice"
IdempotencyKey = Header(None, alias="Idempotency-Key", description="1-128 characters")


def _name(name: str) -> str:
    if not valid_name(name):
        raise NotFound(f"no session named {name!r} (a name is 1-200 characters of "
                       "A-Z a-z 0-9 . _ : - starting with a letter or digit)")
    return name


def _epoch(value: Any, where: str) -> int | None:
    """A body's epoch precondition: an integer from 0 to 2**53 - 1 (also a 0-d integer array,
    as an `.npz` member)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iu":
        value = int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EPOCH:
        raise InvalidInput(f"{where} must be an integer from 0 to {MAX_EPOCH}; "
                           f"got {value!r:.100}")
    return value


def _only(body: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        shown = ", ".join(repr(name)[:80] for name in unknown[:10])
        raise InvalidInput(f"unknown field(s) [{shown}] in the {what} body; "
                           f"expected fields among {list(allowed)}")


def _applied(outcome: AppliedOutcome) -> JSON:
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return JSON({"epoch": outcome.epoch, "samples": outcome.samples}, headers=headers)


@router.put("/{name}", response_model=SessionDoc, status_code=201,
            responses={200: {"model": SessionDoc},
                       **errors(400, 401, 403, 404, 409, 413, 415, 422, 503, 504, 507)},
            openapi_extra=CREATE_BODY)
async def create_session(name: str, request: Request, sessions: SessionsDep,
                         settings: SettingsDep, _: Write) -> JSON:
    """Create a session (idempotent: 200 when it exists with an equal config, 409 if not)."""
    if not valid_name(name):
        raise InvalidInput(f"invalid session name {name!r}: expected 1-200 characters of "
                           "A-Z a-z 0-9 . _ : - starting with a letter or digit")
    body = await codecs.json_object(request, settings.max_body_bytes)
    _only(body, ("metric", "config", "metrics", "ttl_seconds", "window", "slices"), "create")
    ttl = body.get("ttl_seconds")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int)
                            or not 1 <= ttl <= settings.max_ttl_seconds):
        raise InvalidInput(f"'ttl_seconds' must be an integer from 1 to "
                           f"{settings.max_ttl_seconds}; got {ttl!r:.100}")
    window = None if body.get("window") is None else sessions.window_from(body["window"])
    slices = None if body.get("slices") is None else sessions.slices_from(body["slices"])
    if "metrics" in body:
        members = _collection_members(body)
        document, created = await sessions.create(name, None, None, ttl, members=members,
                                                  window=window, slices=slices)
        return JSON(document, status_code=201 if created else 200)
    metric, config = body.get("metric"), body.get("config")
    if not isinstance(metric, str) or not metric:
        raise InvalidInput(f"'metric' must be a metric class name (string), or 'metrics' a "
                           f"list of them (a collection); got metric={metric!r:.100}")
    if config is not None and not isinstance(config, dict):
        raise InvalidInput(f"'config' must be an object of constructor arguments; "
                           f"got {config!r:.100}")
    document, created = await sessions.create(name, metric, config, ttl, window=window,
                                              slices=slices)
    return JSON(document, status_code=201 if created else 200)


def _collection_members(body: dict[str, Any]) -> list[Any]:
    """A collection's `metrics`: given instead of `metric`/`config`, as a non-empty list
    (each entry is checked when the collection is built)."""
    both = sorted({"metric", "config"} & set(body))
    if both:
        raise InvalidInput(f"a create body gives either 'metric' (and 'config') for one "
                           f"metric, or 'metrics' for a collection; got 'metrics' and {both}")
    members = body["metrics"]
    if not isinstance(members, list) or not members:
        raise InvalidInput("'metrics' must be a non-empty list of {\"metric\": <class>, "
                           f"\"config\": {{...}}}} objects; got {members!r:.100}")
    return members


@router.get("", response_model=SessionList, responses=errors(401, 422, 503))
async def list_sessions(sessions: SessionsDep, grant: Read,
                        prefix: str = Query("", max_length=200),
                        limit: int = Query(100, ge=1, le=1000),
                        cursor: str | None = Query(None, max_length=400)) -> JSON:
    """One page of the sessions whose name starts with `prefix` (and that the caller's token
    covers), sorted by name, with their results; pass `next_cursor` back as `cursor`."""
    own = grant.prefix if grant is not None else ""
    return JSON(await sessions.listing(prefix, cursor, limit, own))


@router.get("/{name}", response_model=SessionWithResult, responses=errors(401, 403, 404, 503))
async def get_session(name: str, sessions: SessionsDep, _: Read) -> JSON:
    return JSON(await sessions.get(_name(name)))


@router.delete("/{name}", status_code=204, responses=errors(401, 403, 404, 503, 504))
async def delete_session(name: str, sessions: SessionsDep, _: Admin) -> Response:
    await sessions.delete(_name(name))
    return Response(status_code=204)


async def _bind_update(request: Request) -> dict[str, Any]:
    """`update`'s arguments, as FastAPI would bind them from its signature (hot path)."""
    state = request.app.state
    return {"name": request.path_params["name"], "request": request,
            "sessions": state.sessions, "settings": state.settings,
            "_": await require(request, "write"),
            "epoch": _epoch(_query(request, "epoch"), "query parameter 'epoch'"),
            "idempotency_key": request.headers.get("idempotency-key")}


async def _bind_result(request: Request) -> dict[str, Any]:
    """`result`'s arguments, as FastAPI would bind them from its signature (hot path)."""
    return {"name": request.path_params["name"], "sessions": request.app.state.sessions,
            "_": await require(request, "read"),
            "window": _window_seconds(_query(request, "window")),
            "slice": _slice_query(_query(request, "slice"))}


def _query(request: Request, key: str) -> str | None:
    """A query parameter; without a query string, None without building Starlette's
    QueryParams (a few us of a hot request)."""
    return request.query_params.get(key) if request.scope.get("query_string") else None


def _slice_query(value: str | None) -> str | None:
    """`?slice=v`: a slice value (an integer's slice is its decimal string)."""
    return None if value is None else one_value(value, "query parameter 'slice'")


def _window_seconds(value: str | None) -> int | None:
    """`?window=S`: a whole number of seconds (checked against the session's window later)."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= 12):
        raise InvalidInput(f"query parameter 'window' must be a whole number of seconds (a "
                           f"multiple of the session's bucket_seconds); got {value!r:.100}")
    return int(value)


@router.post("/{name}/update", response_model=Applied, openapi_extra=UPDATE_BODY,
             responses=errors(400, 401, 403, 404, 409, 413, 415, 422, 503, 504, 507))
@bind(_bind_update)
async def update(name: str, request: Request, sessions: SessionsDep, settings: SettingsDep,
                 _: Write, epoch: int | None = Query(None, ge=0, le=MAX_EPOCH),
                 idempotency_key: str | None = IdempotencyKey) -> JSON:
    """`update_state` with one batch: JSON, or an `.npz` archive of the same fields."""
    name = _name(name)
    limit = settings.max_batch_elements
    payload = await codecs.array_payload(request, settings.max_body_bytes, limit)
    fields = payload.fields
    _only(fields, (*UPDATE_FIELDS, "sample_weight", "epoch", "slice", "slices"), "update")
    slicing = None
    if "slice" in fields or "slices" in fields:  # a long JSON list is sorted out off the loop
        slicing = await codecs.off_loop(payload.size, from_fields, fields)
    body_epoch = fields.pop("epoch", None)
    wanted = _epoch(body_epoch, "'epoch'") if body_epoch is not None else epoch
    if fields.get("sample_weight") is None:
        fields.pop("sample_weight", None)
    arrays = await codecs.decode_arrays(payload, fields, limit)
    inputs = {k: arrays[k] for k in UPDATE_FIELDS if k in arrays}
    if not inputs:
        raise InvalidInput("the update needs 'y_true' and 'y_pred' (or 'values' for Mean, "
                           "Sum and other reduction metrics)")
    sample_weight = arrays.get("sample_weight")
    outcome = await sessions.update(name, inputs, sample_weight, wanted, idempotency_key,
                                    slicing)
    return _applied(outcome)


@router.post("/{name}/merge", response_model=Applied, openapi_extra=MERGE_BODY,
             responses=errors(400, 401, 403, 404, 409, 413, 415, 422, 503, 504, 507))
async def merge(name: str, request: Request, sessions: SessionsDep, settings: SettingsDep,
                _: Write, idempotency_key: str | None = IdempotencyKey) -> JSON:
    """Add pre-aggregated variables, as Keras' `merge_state` would; with `"slice": v`, to
    that slice of a sliced session and to its overall state."""
    name = _name(name)
    payload = await codecs.json_payload(request, settings.max_body_bytes,
                                        max_elements=settings.max_batch_elements)
    body = payload.fields
    _only(body, ("variables", "epoch", "slice"), "merge")
    slice_value = None if body.get("slice") is None else one_value(body["slice"])
    variables = body.get("variables")
    if not isinstance(variables, dict) or not variables:
        raise InvalidInput("'variables' must be a non-empty object of variable name -> value; "
                           f"got {variables!r:.200}")
    wanted = _epoch(body.get("epoch"), "'epoch'")
    arrays = await codecs.decode_arrays(payload, variables, settings.max_batch_elements,
                                        label="variable {!r}", dtype=np.float64)
    outcome = await sessions.merge(name, arrays, wanted, idempotency_key, slice_value)
    return _applied(outcome)


@router.get("/{name}/result", response_model=ResultDoc,
            responses=errors(401, 403, 404, 422, 503))
@bind(_bind_result)
async def result(name: str, sessions: SessionsDep, _: Read,
                 window: int | None = Query(None, ge=1, description=WINDOW_QUERY),
                 slice: str | None = Query(None, max_length=200, description=SLICE_QUERY)
                 ) -> JSON:
    """The epoch's result; with `?window=S`, the result over the batches applied in the last S
    seconds' window buckets (a session created with a window), whatever the epoch; with
    `?slice=v`, the result over the epoch's samples of that slice (404: none yet); with both,
    over that slice's samples in the window."""
    return JSON(await sessions.result(_name(name), window, slice))


@router.get("/{name}/slices", response_model=SlicesDoc,
            responses=errors(401, 403, 404, 422, 503))
async def slices(name: str, sessions: SessionsDep, _: Read,
                 window: int | None = Query(None, ge=1, description=WINDOW_QUERY)) -> JSON:
    """Every slice's result in the current epoch, by slice value (a session created with
    slices; 422 otherwise); with `?window=S`, over the last S seconds' window buckets."""
    return JSON(await sessions.slices(_name(name), window))


@router.get("/{name}/variables", response_model=VariablesDoc,
            responses=errors(401, 403, 404, 422, 503))
async def variables(name: str, sessions: SessionsDep, _: Read,
                    slice: str | None = Query(None, max_length=200, description=SLICE_QUERY)
                    ) -> JSON:
    """The variables as Keras holds them; with `?slice=v`, that slice's."""
    return JSON(await sessions.variables(_name(name), _slice_query(slice)))


@router.post("/{name}/reset", response_model=ResetAnswer, openapi_extra=RESET_BODY,
             responses=errors(400, 401, 403, 404, 409, 413, 415, 422, 503, 504, 507))
async def reset(name: str, request: Request, sessions: SessionsDep, settings: SettingsDep,
                _: Write) -> JSON:
    """Close the current epoch (its result goes to the history) and open the next one.
    Optional body `{"epoch": N}`: reset only if the session is at epoch N (else 409), so that
    several trainers resetting at the end of the same epoch reset it once."""
    name = _name(name)
    body = await codecs.json_object(request, settings.max_body_bytes, optional=True)
    _only(body, ("epoch",), "reset")
    return JSON(await sessions.reset(name, _epoch(body.get("epoch"), "'epoch'")))


@router.get("/{name}/config", response_model=ConfigDoc, responses=errors(401, 403, 404, 503))
async def config(name: str, sessions: SessionsDep, _: Read) -> JSON:
    return JSON(await sessions.config(_name(name)))


@router.get("/{name}/history", response_model=History, responses=errors(401, 403, 404, 503))
async def history(name: str, sessions: SessionsDep, _: Read) -> JSON:
    return JSON(await sessions.history(_name(name)))


# The router tries its routes in order: the hot ones (a training job's updates, a dashboard's
# reads) first.
HOT_PATHS = (f"{router.prefix}/{{name}}/update", f"{router.prefix}/{{name}}/result")
router.routes.sort(key=lambda route: getattr(route, "path", "") not in HOT_PATHS)
