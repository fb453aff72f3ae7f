"""Property-based tests of the whole API from its own OpenAPI document (schemathesis), on the
in-process app with the in-memory store: open, and with tokens configured.

Each operation gets a bounded, reproducible run (derandomized, a few dozen examples), with the
checks that hold for any request: no 5xx, every status is documented for its route, every
body has the documented content type and schema, documented headers are present.

Random names and bodies alone would only ever meet 404s, so the generated cases are mixed
with live sessions of a few metric families and with well-formed creates and batches: the
answers of the success paths are checked against their schemas too."""

from __future__ import annotations

import io

import numpy as np
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import get_client
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from app.api.app import create_app
from app.settings import Settings
from app.store.memory import MemoryStore

TOKENS = {"fuzz-admin": {"scopes": ["admin"]}}
AUTH = {"Authorization": "Bearer fuzz-admin"}
EXAMPLES = 40
#: Sessions kept alive during the run (a DELETE may remove one; it is created again).
LIVE = {
    "fz.mean": {"metric": "Mean"},
    "fz.precision": {"metric": "Precision", "config": {"thresholds": [0.3, 0.7]}},
    "fz.auc": {"metric": "AUC", "config": {"num_thresholds": 5}},
    "fz.topk": {"metric": "SparseTopKCategoricalAccuracy", "config": {"k": 2}},
    "fz.collection": {"metrics": [{"metric": "Precision"}, {"metric": "Recall"},
                                  {"metric": "AUC", "config": {"num_thresholds": 5}}]},
}
FIRST_BATCH = {
    "fz.mean": {"values": [1.0, 2.0, 4.0]},
    "fz.precision": {"y_true": [0, 1, 1], "y_pred": [0.9, 0.6, 0.2]},
    "fz.auc": {"y_true": [0, 1, 1], "y_pred": [0.9, 0.6, 0.2]},
    "fz.topk": {"y_true": [2, 0], "y_pred": [[0.1, 0.2, 0.7], [0.5, 0.4, 0.1]]},
    "fz.collection": {"y_true": [0, 1, 1], "y_pred": [0.9, 0.6, 0.2]},
}
live_names = st.sampled_from(sorted(LIVE))
names = live_names | live_names | st.text(min_size=1, max_size=12)  # 2 in 3: a live session
finite = st.floats(-1e3, 1e3, allow_nan=False)
probabilities = st.lists(st.floats(0, 1), min_size=1, max_size=6)
batches = st.one_of(
    st.builds(lambda v: {"values": v}, st.lists(finite, min_size=1, max_size=6)),
    probabilities.flatmap(lambda p: st.builds(
        lambda t, w: {"y_true": t, "y_pred": p, **w},
        st.lists(st.integers(0, 1), min_size=len(p), max_size=len(p)),
        st.just({}) | st.builds(lambda x: {"sample_weight": x}, finite))),
    st.builds(lambda e: {"epoch": e}, st.integers(0, 3)),
)
def npz(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


#: `.npz` bodies of update: archives of well- and ill-fitting arrays, and bytes that are none.
npz_bodies = st.one_of(
    batches.map(npz),
    st.dictionaries(st.sampled_from(["y_true", "y_pred", "values", "other"]),
                    st.lists(finite, max_size=4), min_size=1).map(npz),
    st.binary(max_size=64),
)
schemathesis.openapi.media_type("application/x-npz", npz_bodies)

creates = st.builds(lambda m, c: {"metric": m, **c},
                    st.sampled_from(["Mean", "Sum", "Precision", "AUC", "mse", "acc"]),
                    st.just({}) | st.just({"config": {"name": "other"}}))
collection_creates = st.builds(
    lambda members: {"metrics": [{"metric": m} for m in members]},
    st.lists(st.sampled_from(["Precision", "Recall", "AUC", "mse", "Mean"]), min_size=1,
             max_size=3))
SEED = 20261124


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, unsupported_method,
          allow_header_conformance]
#: Only with tokens configured: the bearer token is then needed (without, the service is open).
AUTH_CHECKS = [missing_required_header, ignored_auth]

open_app = create_app(Settings(), store=MemoryStore())
secured_app = create_app(Settings.model_validate({"tokens": TOKENS}), store=MemoryStore())
open_schema = schemathesis.openapi.from_asgi("/openapi.json", open_app)
secured_schema = schemathesis.openapi.from_asgi("/openapi.json", secured_app)


def keep_sessions_alive(app) -> None:
    with get_client(app) as client:
        for name, body in LIVE.items():
            if client.get(f"/v1/sessions/{name}", headers=AUTH).status_code == 404:
                assert client.put(f"/v1/sessions/{name}", json=body, headers=AUTH).ok
                assert client.post(f"/v1/sessions/{name}/update", json=FIRST_BATCH[name],
                                   headers=AUTH).ok


def _mix_in_live_sessions(schema) -> None:
    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        if not isinstance(path_parameters, dict) or "name" not in path_parameters:
            return st.just(path_parameters)
        return names.map(lambda name: {**path_parameters, "name": name}) | \
            st.just(path_parameters)

    @schema.hook
    def flatmap_body(context, body):
        path, method = context.operation.path, context.operation.method.upper()
        if method == "PUT":
            return creates | collection_creates | st.just(body)
        if path.endswith(("/update", "/reset")):
            return batches | batches | st.just(body)
        return st.just(body)


_mix_in_live_sessions(open_schema)
_mix_in_live_sessions(secured_schema)

BOUNDED = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                   suppress_health_check=list(HealthCheck))


@open_schema.parametrize()
@BOUNDED
def test_open_service(case):
    keep_sessions_alive(open_app)
    case.call_and_validate(checks=CHECKS)


@secured_schema.parametrize()
@BOUNDED
def test_service_with_tokens(case):
    keep_sessions_alive(secured_app)
    case.call_and_validate(headers=AUTH, checks=CHECKS + AUTH_CHECKS)
