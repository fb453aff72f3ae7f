"""The request-building core shared by `TallyClient` and `AsyncTallyClient` (sans I/O).

Every endpoint is a function returning a `Call`: the HTTP request to send, which answers are
results, how to parse them, and how safe the request is to send twice. The two clients differ
only in how they send a `Call` (see `retry.py` for the retry decisions they share).
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import numpy as np

from tally_client.errors import error_from_response

T = TypeVar("T")
JSON_TYPE = "application/json"
NPZ_TYPE = "application/x-npz"

# Above this many numbers in one batch, an update is sent as an .npz archive (about 4 bytes
# per float32 number instead of ~20 characters of JSON, and no JSON parsing on the server).
DEFAULT_NPZ_THRESHOLD = 4096


class Replay(Enum):
    """How safe a request is to send again after a failure.

    - SAFE: sending it twice has the effect of sending it once (GETs; create, idempotent by
      contract; update and merge, which carry an Idempotency-Key; reset with an epoch
      precondition, whose second landing is a 409). Retried on 503, 504 and any connection
      error, including timeouts after the request was sent.
    - IF_NOT_APPLIED: a second landing would act again (reset without precondition would close
      two epochs; delete would delete a session recreated meanwhile). Retried only when the
      first attempt certainly changed nothing: 503, or a connection that was never made.
    - NEVER: answered once, as is (readiness probes).
    """

    SAFE = "safe"
    IF_NOT_APPLIED = "if-not-applied"
    NEVER = "never"


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str | int] | None = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    replay: Replay = Replay.SAFE
    answers: frozenset[int] = frozenset()
    """Statuses besides 2xx handed to `parse` instead of raised (e.g. 503 for readiness)."""

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        return client.build_request(self.method, self.path, params=self.params,
                                    content=self.content, headers=dict(self.headers))


def outcome(call: Call[T], response: httpx.Response) -> T:
    """The parsed answer, or the typed exception for an error answer."""
    if response.is_success or response.status_code in call.answers:
        return call.parse(response)
    raise error_from_response(response)


# ---- encoding ---------------------------------------------------------------------------

def as_array(value: Any) -> np.ndarray:
    """Whatever `np.asarray` converts (lists, numpy, jax and tf tensors), plus torch tensors
    that need detaching from the graph or copying off the GPU first."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
    return np.asarray(value)


def _json_bytes(document: Any) -> bytes:
    # NaN/Infinity are written as such on purpose: the service answers them with a 422 that
    # names the field, which is more useful than a local encoding error.
    return json.dumps(document, separators=(",", ":")).encode()


def _json_value(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return as_array(value).tolist()


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _json_call(method: str, path: str, document: Any, parse: Callable[[httpx.Response], T],
               replay: Replay = Replay.SAFE, headers: Mapping[str, str] | None = None,
               ) -> Call[T]:
    return Call(method, path, parse, content=_json_bytes(document),
                headers={"Content-Type": JSON_TYPE, **(headers or {})}, replay=replay)


def _document(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object from {response.request.url}; got {body!r:.100}")
    return body


def _session(name: str, suffix: str = "") -> str:
    return f"/v1/sessions/{quote(name, safe='')}{suffix}"


def _without_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


# ---- slices -----------------------------------------------------------------------------
# A slice value is a string or an integer (3 and "3" are one slice, API.md "Slices"). The
# client converts what it must to put a value on the wire (numpy scalars, object arrays)
# and leaves every other judgement (length, characters, how many) to the service.

SliceValue = str | int


def slices_spec(slices: int | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`slices=M` (the most distinct values) as the create body's `{"max": M}`; a mapping
    is passed through as API.md defines it."""
    if slices is None:
        return None
    if isinstance(slices, Mapping):
        return dict(slices)
    if isinstance(slices, (int, np.integer)) and not isinstance(slices, (bool, np.bool_)):
        return {"max": int(slices)}
    raise TypeError(f"slices must be the most distinct slice values (an int) or a mapping "
                    f"such as {{'max': 1000}}; got {slices!r}")


def slice_value(value: Any) -> Any:
    """One slice value as JSON writes it and a query parameter carries it: numpy scalars
    become Python ones (`np.int64(3)` -> 3, `np.str_("eu")` -> "eu")."""
    return value.item() if isinstance(value, np.generic) else value


def slice_array(values: Any) -> np.ndarray:
    """Per-sample slice values as an array the service reads from `.npz` (kind i, u or U).
    Object arrays (a pandas column, a list of numpy scalars) become unicode, or int64 when
    every value is an integer; bytes are decoded as UTF-8. Always a new array: the caller
    may reuse its buffer while the batch waits."""
    array = np.array(as_array(values))
    if array.dtype.kind == "S":
        return np.char.decode(array, "utf-8")
    if array.dtype.kind != "O":
        return array
    items = [slice_value(v) for v in array.ravel().tolist()]
    odd = [v for v in items if isinstance(v, bool) or not isinstance(v, (str, int))]
    if odd:
        raise TypeError(f"slice values are strings or integers; got {odd[0]!r} "
                        f"({type(odd[0]).__name__})")
    if all(isinstance(v, int) for v in items):
        return np.array(items, dtype=np.int64).reshape(array.shape)
    return np.array([str(v) for v in items], dtype=str).reshape(array.shape)


def _one_of_slice_and_slices(slice: Any, slices: Any) -> None:
    if slice is not None and slices is not None:
        raise ValueError("give 'slice' (one value for the whole batch) or 'slices' (a value "
                         "per sample), not both")


# ---- endpoints --------------------------------------------------------------------------

def create(name: str, metric: str | None = None, config: Mapping[str, Any] | None = None, *,
           metrics: list[Mapping[str, Any]] | None = None,
           window: Mapping[str, Any] | None = None,
           slices: int | Mapping[str, Any] | None = None,
           ttl_seconds: int | None = None) -> Call[dict[str, Any]]:
    """PUT a session: one metric class (`metric`, `config`) or a collection (`metrics`);
    `window` and `ttl_seconds` are passed through as API.md defines them; `slices=M` asks
    for a result per slice value, at most M distinct values (`{"max": M}` on the wire)."""
    if (metric is None) == (metrics is None):
        raise ValueError("give either 'metric' (one metric class) or 'metrics' (a collection)")
    body = _without_none(metric=metric, config=dict(config) if config is not None else None,
                         metrics=[dict(m) for m in metrics] if metrics is not None else None,
                         window=window, slices=slices_spec(slices),
                         ttl_seconds=ttl_seconds)
    return _json_call("PUT", _session(name), body, _document)


def get(name: str) -> Call[dict[str, Any]]:
    return Call("GET", _session(name), _document)


def delete(name: str) -> Call[None]:
    return Call("DELETE", _session(name), lambda _: None, replay=Replay.IF_NOT_APPLIED)


def list_page(prefix: str = "", limit: int | None = None,
              cursor: str | None = None) -> Call[dict[str, Any]]:
    """One page of the listing: `{"sessions": [...], "next_cursor": str | None}`."""
    params: dict[str, str | int] = {"prefix": prefix} if prefix else {}
    params.update(_without_none(limit=limit, cursor=cursor))
    return Call("GET", "/v1/sessions", _document, params=params)


def next_cursor(page: Mapping[str, Any]) -> str | None:
    """The cursor of the next page; a service without paging (no `next_cursor`) is complete."""
    cursor = page.get("next_cursor")
    return cursor if isinstance(cursor, str) and cursor else None


def update(name: str, fields: Mapping[str, Any], *, epoch: int | None = None,
           slice: SliceValue | None = None, slices: Any = None,
           idempotency_key: str | None = None,
           npz_threshold: int = DEFAULT_NPZ_THRESHOLD) -> Call[dict[str, Any]]:
    """POST one batch. `fields` holds `y_true`/`y_pred` or `values`, and `sample_weight`
    (None values are left out). `slice`: the slice of the whole batch; `slices`: one value
    per sample along the first axis (not both). Above `npz_threshold` numbers the batch goes
    as `.npz`, its slice values as the members `slice` (0-d) or `slices` (1-d), ints or
    unicode, never objects. The body is built once: every retry sends these very bytes."""
    _one_of_slice_and_slices(slice, slices)
    arrays = {k: as_array(v) for k, v in fields.items() if v is not None}
    if not arrays:
        raise ValueError("an update needs y_true and y_pred, or values")
    headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
    path = _session(name, "/update")
    per_sample = slice_array(slices) if slices is not None else None
    if sum(a.size for a in arrays.values()) > npz_threshold:
        if slice is not None:
            arrays["slice"] = slice_array(slice_value(slice))
        if per_sample is not None:
            arrays["slices"] = per_sample
        return Call("POST", path, _document, content=_npz_bytes(arrays),
                    params=_without_none(epoch=epoch),
                    headers={"Content-Type": NPZ_TYPE, **headers})
    body = {k: _json_value(a) for k, a in arrays.items()}
    body.update(_without_none(epoch=epoch, slice=slice_value(slice),
                              slices=per_sample.tolist() if per_sample is not None else None))
    return _json_call("POST", path, body, _document, headers=headers)


def merge(name: str, variables: Mapping[str, Any], *, epoch: int | None = None,
          slice: SliceValue | None = None,
          idempotency_key: str | None = None) -> Call[dict[str, Any]]:
    """POST pre-aggregated variables (name -> value with that variable's shape); with
    `slice`, they are added to that slice and to the overall state."""
    if not variables:
        raise ValueError("merge needs at least one variable")
    body = _without_none(variables={k: _json_value(v) for k, v in variables.items()},
                         epoch=epoch, slice=slice_value(slice))
    return _json_call("POST", _session(name, "/merge"), body, _document,
                      headers={"Idempotency-Key": idempotency_key or new_idempotency_key()})


def result(name: str, *, window: int | float | None = None,
           slice: SliceValue | None = None) -> Call[dict[str, Any]]:
    """The result document; `window` (seconds) and/or `slice` select a windowed or sliced
    one (both: that slice's result over the window, on a sliced windowed session)."""
    return Call("GET", _session(name, "/result"), _document,
                params=_without_none(window=window, slice=slice_value(slice)) or None)


def slices(name: str, *, window: int | float | None = None) -> Call[dict[str, Any]]:
    """`{"name", "epoch", "slices": {"<value>": <result>, ...}}`: every slice of the epoch,
    or with `window` (seconds) every slice of that window (`"window_seconds"` too)."""
    return Call("GET", _session(name, "/slices"), _document,
                params=_without_none(window=window) or None)


def variables(name: str, *, slice: SliceValue | None = None) -> Call[dict[str, Any]]:
    """The variables document: the overall state's, or with `slice` that slice's."""
    return Call("GET", _session(name, "/variables"), _document,
                params=_without_none(slice=slice_value(slice)) or None)


def reset(name: str, *, epoch: int | None = None) -> Call[dict[str, Any]]:
    """Close the epoch. With `epoch`, only if the session is at that epoch (else `Conflict`):
    safe to retry, and several workers resetting the same epoch reset it once."""
    if epoch is None:
        return Call("POST", _session(name, "/reset"), _document, replay=Replay.IF_NOT_APPLIED)
    return _json_call("POST", _session(name, "/reset"), {"epoch": epoch}, _document)


def config(name: str) -> Call[dict[str, Any]]:
    return Call("GET", _session(name, "/config"), _document)


def history(name: str) -> Call[dict[str, Any]]:
    return Call("GET", _session(name, "/history"), _document)


def catalogue() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/metrics", _document)


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/healthz", _document)


def ready() -> Call[bool]:
    """True when the service and its store answer; False on 503 (not retried: a probe)."""
    return Call("GET", "/readyz", lambda r: r.status_code == 200, replay=Replay.NEVER,
                answers=frozenset({503}))
