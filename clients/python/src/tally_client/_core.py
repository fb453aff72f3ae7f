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


# ---- endpoints --------------------------------------------------------------------------

def create(name: str, metric: str | None = None, config: Mapping[str, Any] | None = None, *,
           metrics: list[Mapping[str, Any]] | None = None,
           window: Mapping[str, Any] | None = None, slices: Mapping[str, Any] | None = None,
           ttl_seconds: int | None = None) -> Call[dict[str, Any]]:
    """PUT a session: one metric class (`metric`, `config`) or a collection (`metrics`);
    `window`, `slices` and `ttl_seconds` are passed through as API.md defines them."""
    if (metric is None) == (metrics is None):
        raise ValueError("give either 'metric' (one metric class) or 'metrics' (a collection)")
    body = _without_none(metric=metric, config=dict(config) if config is not None else None,
                         metrics=[dict(m) for m in metrics] if metrics is not None else None,
                         window=window, slices=slices, ttl_seconds=ttl_seconds)
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
           slice: str | int | None = None, slices: Any = None,
           idempotency_key: str | None = None,
           npz_threshold: int = DEFAULT_NPZ_THRESHOLD) -> Call[dict[str, Any]]:
    """POST one batch. `fields` holds `y_true`/`y_pred` or `values`, and `sample_weight`
    (None values are left out). Above `npz_threshold` numbers the batch goes as `.npz`."""
    arrays = {k: as_array(v) for k, v in fields.items() if v is not None}
    if not arrays:
        raise ValueError("an update needs y_true and y_pred, or values")
    headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
    path = _session(name, "/update")
    if sum(a.size for a in arrays.values()) > npz_threshold:
        if slice is not None:
            arrays["slice"] = np.asarray(slice)
        if slices is not None:
            arrays["slices"] = as_array(slices)
        return Call("POST", path, _document, content=_npz_bytes(arrays),
                    params=_without_none(epoch=epoch),
                    headers={"Content-Type": NPZ_TYPE, **headers})
    body = {k: _json_value(a) for k, a in arrays.items()}
    body.update(_without_none(epoch=epoch, slice=slice,
                              slices=_json_value(slices) if slices is not None else None))
    return _json_call("POST", path, body, _document, headers=headers)


def merge(name: str, variables: Mapping[str, Any], *, epoch: int | None = None,
          idempotency_key: str | None = None) -> Call[dict[str, Any]]:
    """POST pre-aggregated variables (name -> value with that variable's shape)."""
    if not variables:
        raise ValueError("merge needs at least one variable")
    body = _without_none(variables={k: _json_value(v) for k, v in variables.items()},
                         epoch=epoch)
    return _json_call("POST", _session(name, "/merge"), body, _document,
                      headers={"Idempotency-Key": idempotency_key or new_idempotency_key()})


def result(name: str, *, window: int | float | None = None,
           slice: str | int | None = None) -> Call[dict[str, Any]]:
    """The result document; `window` (seconds) or `slice` select a windowed or sliced one."""
    return Call("GET", _session(name, "/result"), _document,
                params=_without_none(window=window, slice=slice) or None)


def slices(name: str) -> Call[dict[str, Any]]:
    return Call("GET", _session(name, "/slices"), _document)


def variables(name: str) -> Call[dict[str, Any]]:
    return Call("GET", _session(name, "/variables"), _document)


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
