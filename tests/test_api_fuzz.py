"""Property tests: no body, however odd (JSON or .npz, on update, merge, reset or create),
makes an endpoint fail with a 5xx or change state when it answers with an error."""

from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from app.api.app import create_app
from app.settings import Settings
from app.store.memory import MemoryStore

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3))
nested = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=12)
bodies = st.dictionaries(st.sampled_from(["y_true", "y_pred", "values", "sample_weight",
                                          "epoch", "extra", "slice", "slices"]), nested,
                         max_size=4)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(), store=MemoryStore())) as c:
        c.put("/v1/sessions/p", json={"metric": "Precision", "config": {"thresholds": [0.5]}})
        c.put("/v1/sessions/m", json={"metric": "Mean"})
        c.put("/v1/sessions/c", json={"metric": "SparseCategoricalCrossentropy"})
        c.put("/v1/sessions/s", json={"metric": "Mean", "slices": {"max": 3}})
        yield c


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["p", "m", "c", "s"]), body=bodies)
def test_any_json_body_gets_a_clean_answer(client, name, body):
    before = client.get(f"/v1/sessions/{name}/variables").json()
    slices_before = client.get(f"/v1/sessions/{name}/slices").json()
    r = client.post(f"/v1/sessions/{name}/update", content=json.dumps(body),
                    headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400, 409, 422), r.text
    if r.status_code != 200:
        assert r.json()["detail"]
        assert client.get(f"/v1/sessions/{name}/variables").json() == before
        assert client.get(f"/v1/sessions/{name}/slices").json() == slices_before


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64))
def test_any_bytes_get_a_clean_answer(client, raw):
    r = client.post("/v1/sessions/m/update", content=raw,
                    headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400, 409, 422), r.text


# -- hostile JSON on every endpoint that reads it, and hostile .npz archives ------------------
SMALL_LIMIT = 64  # max_batch_elements, so that the 413 path is reached too
CLEAN = (200, 400, 409, 413, 422)
texts = st.one_of(st.text(max_size=4), st.sampled_from(["\ud800", "\udc00", "\ud83d\ude00",
                                                        "1", "NaN", ""]))
numbers = st.one_of(st.integers(), st.integers(-2, 2).map(lambda e: 10 ** (400 * e)),
                    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none())
values = st.recursive(st.one_of(numbers, texts),
                      lambda inner: st.one_of(st.lists(inner, max_size=5),
                                              st.dictionaries(texts, inner, max_size=3)),
                      max_leaves=24)
fields = st.sampled_from(["y_true", "y_pred", "values", "sample_weight", "epoch", "variables",
                          "metric", "config", "ttl_seconds", "x", "slice", "slices", "window"])
objects = st.one_of(
    st.dictionaries(fields, values, max_size=4),
    # near-valid batches, some over the element limit
    st.fixed_dictionaries({"values": st.lists(numbers, max_size=2 * SMALL_LIMIT)},
                          optional={"epoch": numbers, "sample_weight": values}),
    st.integers(0, 2 * SMALL_LIMIT).flatmap(lambda n: st.fixed_dictionaries({
        "y_true": st.lists(st.sampled_from([0, 1, True, 0.5]), min_size=n, max_size=n),
        "y_pred": st.lists(st.floats(0, 1), min_size=n, max_size=n)})),
    st.fixed_dictionaries({"variables": st.dictionaries(
        st.sampled_from(["total", "count", "true_positives", "false_positives"]), values,
        min_size=1, max_size=2)}, optional={"epoch": numbers}))


def _deepen(raw: str, depth: int) -> str:
    return raw if depth == 0 else '{"values": ' + "[" * depth + raw + "]" * depth + "}"


json_bodies = st.builds(_deepen, st.one_of(objects, values).map(json.dumps),
                        st.sampled_from([0] * 8 + [3, 1030, 5000]))
ENDPOINTS = {"update-m": ("POST", "/v1/sessions/m/update"),
             "update-p": ("POST", "/v1/sessions/p/update"),
             "merge-m": ("POST", "/v1/sessions/m/merge"),
             "merge-p": ("POST", "/v1/sessions/p/merge"),
             "update-s": ("POST", "/v1/sessions/s/update"),
             "merge-s": ("POST", "/v1/sessions/s/merge"),
             "reset": ("POST", "/v1/sessions/r/reset"),
             "create": ("PUT", "/v1/sessions/fz")}


@pytest.fixture(scope="module")
def limited():
    settings_ = Settings(max_batch_elements=SMALL_LIMIT, max_body_bytes=200_000)
    with TestClient(create_app(settings_, store=MemoryStore())) as c:
        c.put("/v1/sessions/p", json={"metric": "Precision"})
        c.put("/v1/sessions/m", json={"metric": "Mean"})
        c.put("/v1/sessions/r", json={"metric": "Mean"})
        c.put("/v1/sessions/s", json={"metric": "Mean", "slices": {"max": 2}})
        c.post("/v1/sessions/p/update", json={"y_true": [1, 0], "y_pred": [0.9, 0.8]})
        c.post("/v1/sessions/s/update", json={"values": [1.0, 2.0], "slices": ["1", "a"]})
        yield c


def _state(client):
    return [(client.get(f"/v1/sessions/{n}").json(), client.get(f"/v1/sessions/{n}/variables")
             .json(), client.get(f"/v1/sessions/{n}/history").json()) for n in "pmrs"] + [
        client.get("/v1/sessions").json(), client.get("/v1/sessions/s/slices").json()]


def _assert_clean(client, response, before):
    event(f"status {response.status_code}")
    assert response.status_code in CLEAN, response.text
    if response.status_code != 200:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["detail"]
        assert _state(client) == before


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(endpoint=st.sampled_from(sorted(ENDPOINTS)), body=json_bodies,
       mutation=st.one_of(st.none(), st.none(), st.none(),
                          st.tuples(st.integers(0, 10**6), st.integers(1, 255))))
def test_any_json_on_any_endpoint_gets_a_clean_answer(limited, endpoint, body, mutation):
    raw = bytearray(body.encode("utf-8", "surrogatepass"))
    if mutation is not None and raw:
        index, xor = mutation
        raw[index % len(raw)] ^= xor
    method, path = ENDPOINTS[endpoint]
    before = _state(limited)
    r = limited.request(method, path, content=bytes(raw),
                        headers={"Content-Type": "application/json"})
    if endpoint == "create" and r.status_code in (200, 201):
        limited.delete("/v1/sessions/fz")
        assert r.json()["name"] == "fz"
        return
    _assert_clean(limited, r, before)


NPZ_NAMES = ["y_true.npy", "y_pred.npy", "values.npy", "sample_weight.npy", "epoch.npy",
             "slice.npy", "slices.npy", "junk.npy", "values", "values.npy"]
dtypes = st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                   hnp.floating_dtypes(), hnp.complex_number_dtypes(),
                   hnp.unicode_string_dtypes(max_len=2), hnp.datetime64_dtypes())
npz_arrays = dtypes.flatmap(lambda d: hnp.arrays(d, hnp.array_shapes(
    min_dims=0, max_dims=3, min_side=0, max_side=9)))
float_vectors = st.integers(0, 2 * SMALL_LIMIT).flatmap(
    lambda n: hnp.arrays(hnp.floating_dtypes(), n, elements={"allow_nan": True,
                                                           "allow_infinity": True}))
members = st.one_of(
    st.lists(st.tuples(st.sampled_from(NPZ_NAMES), npz_arrays), max_size=4),
    st.tuples(st.just("values.npy"), float_vectors).map(lambda m: [m]),  # Mean
    float_vectors.map(lambda a: [("y_true.npy", a > 0.5), ("y_pred.npy", a)]),  # Precision
    float_vectors.flatmap(lambda a: hnp.arrays(  # Mean with a slice value per sample
        st.sampled_from([np.dtype("int64"), np.dtype("<U2"), np.dtype("uint8")]),
        st.sampled_from([a.size, a.size + 1])).map(
        lambda labels: [("values.npy", a), ("slices.npy", labels)])))
mutations = st.one_of(
    st.none(),
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    # a field of the first central directory entry: flags, method, crc, sizes
    st.tuples(st.just("directory"), st.sampled_from([8, 10, 16, 20, 24]),
              st.integers(0, 2**32 - 1)))


def _npz(members_, compression):
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", compression) as archive:
        warnings.simplefilter("ignore")
        for name, array in members_:
            member = io.BytesIO()
            np.save(member, array, allow_pickle=False)
            archive.writestr(name, member.getvalue())
    return bytearray(buffer.getvalue())


def _mutate(raw, mutation):
    if mutation is None or not raw:
        return bytes(raw)
    kind, where, value = mutation
    if kind == "flip":
        raw[where % len(raw)] ^= value
    elif kind == "truncate":
        del raw[where % len(raw):]
    else:
        at = raw.find(b"PK\x01\x02")
        if at >= 0:
            fmt = "<H" if where in (8, 10) else "<I"
            struct.pack_into(fmt, raw, at + where, value % (2 ** (8 * struct.calcsize(fmt)))
                             )
    return bytes(raw)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=st.sampled_from(["m", "p", "s"]), members_=members,
       compression=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
       mutation=mutations, query=st.sampled_from(["", "?epoch=0", "?epoch=1"]))
def test_any_npz_archive_gets_a_clean_answer(limited, path, members_, compression, mutation,
                                             query):
    body = _mutate(_npz(members_, compression), mutation)
    before = _state(limited)
    r = limited.post(f"/v1/sessions/{path}/update{query}", content=body,
                     headers={"Content-Type": "application/x-npz"})
    _assert_clean(limited, r, before)
