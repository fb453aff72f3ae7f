"""Request bodies to numpy, without pydantic field-by-field (too slow for 10^6 numbers).

JSON is parsed by orjson; bodies with the non-standard `NaN`/`Infinity` tokens (which Python's
`json.dumps` writes by default) fall back to the standard library so that they are reported as
what they are, NaN in the input (422), not as broken JSON (400). `.npz` archives are read with
`allow_pickle=False`.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request

from app.errors import BadRequest, InvalidInput, PayloadTooLarge, UnsupportedMediaType

JSON_TYPES = ("application/json",)
NPZ_TYPE = "application/x-npz"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(kind: str) -> bool:
    return kind in JSON_TYPES or kind.endswith("+json") or kind == ""


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(body)  # accepts NaN / Infinity, which we then reject as 422
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(f"the body is not valid JSON: {exc}") from None


async def json_object(request: Request, limit: int, *, optional: bool = False) -> dict[str, Any]:
    """A JSON object body; an empty body is `{}` when `optional`."""
    kind = media_type(request)
    if not _is_json(kind):
        raise UnsupportedMediaType(f"expected Content-Type application/json; got {kind!r}")
    body = await read_body(request, limit)
    if optional and not body.strip():
        return {}
    data = parse_json(body)
    if not isinstance(data, dict):
        raise InvalidInput(f"the body must be a JSON object; got {type(data).__name__}")
    return data


async def array_payload(request: Request, limit: int) -> tuple[dict[str, Any], bool]:
    """The body of an update: JSON object or `.npz` archive. Returns (fields, is_npz)."""
    kind = media_type(request)
    if kind == NPZ_TYPE:
        body = await read_body(request, limit)
        try:
            with np.load(io.BytesIO(body), allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}, True
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise BadRequest(f"the body is not a readable .npz archive: {exc}") from None
    if not _is_json(kind):
        raise UnsupportedMediaType(
            f"expected Content-Type application/json or {NPZ_TYPE}; got {kind!r}")
    return await json_object(request, limit), False


def to_array(value: Any, what: str) -> np.ndarray:
    """A nested list, number or npz array as a finite float32 array. What cannot be decoded
    into a numeric array at all (strings, objects, ragged lists) is a 400; NaN/inf is a 422."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise BadRequest(f"{what} must be numeric; got an array of dtype {value.dtype}")
        with np.errstate(over="ignore"):
            array = value.astype(np.float32)
    else:
        if isinstance(value, str) or value is None or isinstance(value, dict):
            raise BadRequest(f"{what} must be a number or a nested list of numbers; "
                               f"got {type(value).__name__}")
        try:
            with np.errstate(over="ignore"):
                array = np.asarray(value, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise BadRequest(f"{what} must be a rectangular nested list of numbers "
                               f"({exc})") from None
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{what} contains NaN or infinity (or a number beyond float32's "
                           "range); every value must be finite")
    return array
