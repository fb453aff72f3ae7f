"""Hostile JSON bodies on every endpoint that reads one: a 4xx problem whose detail says what
was expected and what was received, never a 5xx, and the store unchanged."""

from __future__ import annotations

import json

import hypothesis
import orjson
import pytest
from hypothesis import strategies as st

from app.api import codecs
from app.settings import Settings
from tests.api_state import observable, seeded_client
from tests.test_api_errors import assert_problem

ELEMENTS = 1000  # max_batch_elements of these tests
BYTES = 200_000
MAX_EPOCH = 2**53 - 1


@pytest.fixture
def client(api_store):
    yield from seeded_client(Settings(max_body_bytes=BYTES, max_batch_elements=ELEMENTS), api_store)


def state(client):
    return observable(client)


def send(client, endpoint, body, content_type="application/json"):
    """POST/PUT raw bytes to one of the endpoints that read a JSON body."""
    method, path = {"update": ("POST", "/v1/sessions/m/update"),
                    "merge": ("POST", "/v1/sessions/m/merge"),
                    "reset": ("POST", "/v1/sessions/m/reset"),
                    "create": ("PUT", "/v1/sessions/new")}[endpoint]
    return client.request(method, path, content=body, headers={"Content-Type": content_type})


ENDPOINTS = ["update", "merge", "reset", "create"]


def nested(depth, inner=b""):
    return b"[" * depth + inner + b"]" * depth


# -- nesting --------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("body", [
    b'{"values": ' + nested(5000, b"1") + b"}",
    b'{"values": ' + nested(5000) + b"}",
    nested(5000),
    b'{"a": ' * 5000 + b"1" + b"}" * 5000,
    b'{"values": [NaN], "epoch": ' + nested(5000) + b"}",  # the NaN path, then deep
], ids=["deep-number", "deep-empty", "bare-deep", "deep-objects", "nan-then-deep"])
def test_400_deep_nesting(client, endpoint, body):
    before = state(client)
    assert_problem(send(client, endpoint, body), 400, "not valid JSON", "nest")
    assert state(client) == before


# -- numbers --------------------------------------------------------------------------------
@pytest.mark.parametrize("number", [
    b"1" + b"0" * 400, b"-1" + b"0" * 400, b"9" * 5000, b"1e999", b"-1e999", b"1.5e309",
    b"1e39", b"-3.5e38", b"NaN", b"Infinity", b"-Infinity",
])
def test_422_number_beyond_float32(client, number):
    before = state(client)
    r = send(client, "update", b'{"values": [1.0, ' + number + b"]}")
    assert_problem(r, 422, "values", "beyond float32 range", "finite")
    assert state(client) == before


@pytest.mark.parametrize("number", [b"1" + b"0" * 400, b"1e999", b"NaN", b"-Infinity"])
def test_422_merge_number_beyond_float64(client, number):
    before = state(client)
    r = send(client, "merge", b'{"variables": {"total": ' + number + b', "count": 1}}')
    assert_problem(r, 422, "total", "beyond float64 range")
    assert state(client) == before


def test_merge_keeps_float64_precision(client):
    """float32 would round 2**24 + 1; merge variables are decoded as float64."""
    assert client.post("/v1/sessions/m/merge", json={"variables": {
        "total": 2**24 + 1, "count": 1}}).status_code == 200
    assert client.get("/v1/sessions/m/result").json()["result"] == pytest.approx(
        (3 + 2**24 + 1) / 3)


@pytest.mark.parametrize("body", [b'{"values": [1.0, NaN', b'{"values": [1e999, }'])
def test_400_nonfinite_in_broken_json_is_broken_json(client, body):
    before = state(client)
    assert_problem(send(client, "update", body), 400, "not valid JSON")
    assert state(client) == before


def test_negative_zero_and_tiny_numbers_are_numbers(client):
    r = send(client, "update", b'{"values": [-0, -0.0, 1e-999, 5e-324]}')
    assert r.status_code == 200, r.text
    assert client.get("/v1/sessions/m/result").json()["result"] == pytest.approx(3 / 6)


def test_booleans_are_ones_and_zeros(client):
    """Keras accepts bool tensors: true and false are 1 and 0, also mixed with numbers."""
    r = client.post("/v1/sessions/m/update", json={"values": [True, False, 1, True]})
    assert r.status_code == 200, r.text
    assert client.get("/v1/sessions/m/result").json()["result"] == pytest.approx(6 / 6)


@pytest.mark.parametrize(("values", "fragments"), [
    (["1", "2"], ["values", "numeric", "text"]),
    ([1, "2"], ["values", "text"]),
    ([[1], ["2"]], ["values", "text"]),
    ([None, "1"], ["values", "str"]),
    ([1, {"a": 1}], ["values", "dict"]),
    ("1", ["values", "str"]),
    ([[1, 2], 3], ["values", "rectangular"]),
])
def test_400_strings_and_objects_in_arrays(client, values, fragments):
    before = state(client)
    assert_problem(client.post("/v1/sessions/m/update", json={"values": values}), 400,
                   *fragments)
    assert state(client) == before


@pytest.mark.parametrize(("variables", "got"), [({"total": "1", "count": 1}, "str"),
                                               ({"total": ["1"]}, "text")])
def test_400_strings_in_merge(client, variables, got):
    before = state(client)
    assert_problem(client.post("/v1/sessions/m/merge", json={"variables": variables}), 400,
                   "variable 'total'", got)
    assert state(client) == before


# -- epoch ----------------------------------------------------------------------------------
@pytest.mark.parametrize("epoch", [2**53, 2**64, 10**30, 18446744073709551616])
def test_422_epoch_beyond_2_pow_53(client, epoch):
    before = state(client)
    r = client.post(f"/v1/sessions/m/update?epoch={epoch}", json={"values": [1]})
    assert_problem(r, 422, "epoch", str(MAX_EPOCH))
    for endpoint, body in [("update", {"values": [1], "epoch": epoch}),
                           ("merge", {"variables": {"total": 1}, "epoch": epoch}),
                           ("reset", {"epoch": epoch})]:
        assert_problem(send(client, endpoint, json.dumps(body)), 422, "epoch",
                       str(MAX_EPOCH))
    assert state(client) == before


def test_largest_epoch_is_a_valid_precondition(client):
    """2**53 - 1 passes validation and reaches the store, which answers as for any epoch."""
    before = state(client)
    r = client.post(f"/v1/sessions/m/update?epoch={MAX_EPOCH}", json={"values": [1]})
    assert_problem(r, 409, str(MAX_EPOCH))
    assert_problem(client.post("/v1/sessions/m/reset", json={"epoch": MAX_EPOCH}), 409,
                   str(MAX_EPOCH))
    assert state(client) == before


# -- text -----------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("body", [
    b'{"metric": "Mean", "config": {"name": "\\ud800"}}',
    b'{"metric": "Mean", "config": {"name": "\\udc00\\ud800"}}',
    b'{"values": [1], "x\\ud800": 1}',
    b'{"values": [NaN], "x": "\\ud800"}',  # the stdlib path must refuse it too
    b'{"metric": "Mean\xff"}',
    b'{"metric": "Mean", "config": {"name": "\xed\xa0\x80"}}',  # a surrogate as UTF-8 bytes
    b'{"values": [NaN], "x": "\xc3"}',
], ids=["lone-high", "reversed-pair", "in-key", "nan-path", "bad-byte", "utf8-surrogate",
        "nan-path-bad-byte"])
def test_400_not_utf8_text(client, endpoint, body):
    before = state(client)
    assert_problem(send(client, endpoint, body), 400, "UTF-8")
    assert state(client) == before


def test_a_surrogate_pair_is_a_character(client):
    r = send(client, "create", b'{"metric": "Mean", "config": {"name": "\\ud83d\\ude00"}}')
    assert r.status_code == 201, r.text
    assert r.json()["config"]["name"] == "\N{GRINNING FACE}"
    assert client.get("/v1/sessions/new/config").json()["name"] == "\N{GRINNING FACE}"


def test_400_byte_order_mark(client):
    before = state(client)
    assert_problem(send(client, "update", b'\xef\xbb\xbf{"values": [1]}'), 400, "BOM")
    assert state(client) == before


@pytest.mark.parametrize("body", [b"[]", b"3", b'"values"', b"null", b"true", b"[1, 2]"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_422_body_not_an_object(client, endpoint, body):
    before = state(client)
    assert_problem(send(client, endpoint, body), 422, "JSON object")
    assert state(client) == before


def test_duplicate_keys_the_last_wins(client):
    """As in orjson, Python's json and JavaScript: documented, not refused."""
    assert send(client, "update", b'{"values": [100], "values": [4]}').status_code == 200
    assert client.get("/v1/sessions/m/result").json()["result"] == pytest.approx(7 / 3)


def test_long_strings_are_not_echoed_whole(client):
    before = state(client)
    for r, status in [
            (client.post("/v1/sessions/m/update", json={"values": "x" * 100_000}), 400),
            (client.post("/v1/sessions/m/update", json={"y" * 100_000: [1]}), 422),
            (client.post("/v1/sessions/m/update", json={"values": [1], "epoch": "9" * 50_000}),
             422),
            (client.put("/v1/sessions/new", json={"metric": "Mean", "ttl_seconds": "9" * 90_000}),
             422),
            (client.put("/v1/sessions/new", json={"metric": "Mean", "config": ["c" * 90_000]}),
             422)]:
        assert_problem(r, status)
        assert len(r.json()["detail"]) < 1000
    assert state(client) == before


# -- content type ---------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8",
                                          "APPLICATION/JSON", "application/json;charset=UTF8",
                                          'application/json; charset="utf-8"',
                                          "application/merge-patch+json", ""])
def test_json_content_type_variants(client, content_type):
    r = send(client, "update", b'{"values": [4]}', content_type)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "ascii"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_415_other_charsets(client, endpoint, charset):
    before = state(client)
    r = send(client, endpoint, b'{"values": [4]}', f"application/json; charset={charset}")
    assert_problem(r, 415, "UTF-8", charset)
    assert state(client) == before


# -- size -----------------------------------------------------------------------------------
def test_element_limit_exact_count(client):
    before = state(client)
    at_limit = [0.5] * ELEMENTS
    assert_problem(client.post("/v1/sessions/p/update", json={
        "y_true": [1] * (ELEMENTS // 2), "y_pred": [0.5] * (ELEMENTS // 2 + 1)}), 413,
        str(ELEMENTS + 1), str(ELEMENTS), "max_batch_elements", "TALLY_MAX_BATCH_ELEMENTS")
    assert_problem(client.post("/v1/sessions/m/update", json={"values": at_limit + [1]}), 413,
                   str(ELEMENTS + 1), str(ELEMENTS))
    assert_problem(client.post("/v1/sessions/m/update", json={
        "values": at_limit, "sample_weight": [1]}), 413, str(ELEMENTS + 1))
    assert state(client) == before
    r = client.post("/v1/sessions/m/update", json={"values": at_limit})
    assert r.status_code == 200, r.text
    assert r.json()["samples"] == ELEMENTS


@pytest.mark.parametrize("endpoint", ["update", "merge"])
def test_element_limit_is_checked_before_parsing(client, monkeypatch, endpoint):
    before = state(client)

    def unreachable(_body):
        raise AssertionError("the body was parsed")

    monkeypatch.setattr(codecs, "parse_json", unreachable)
    values = json.dumps([0.0] * (3 * ELEMENTS))
    body = {"update": f'{{"values": {values}}}',
            "merge": f'{{"variables": {{"total": {values}}}}}'}[endpoint]
    assert_problem(send(client, endpoint, body.encode()), 413, str(3 * ELEMENTS),
                   str(ELEMENTS), "before parsing", "max_batch_elements")
    monkeypatch.undo()
    assert state(client) == before


def test_merge_elements_are_counted_exactly(client):
    before = state(client)
    half = ELEMENTS // 2
    body = {"variables": {"total": [[0.0] * half], "count": [0.0] * (half + 1)}}
    assert json.dumps(body).count(",") == ELEMENTS  # passes the bound before parsing
    assert_problem(client.post("/v1/sessions/m/merge", json=body), 413, str(ELEMENTS + 1))
    assert state(client) == before


def test_body_limit_with_a_lying_content_length(client):
    """The limit is enforced on the bytes received, whatever Content-Length says."""
    before = state(client)
    big = json.dumps({"values": [0.5] * (BYTES // 4)}).encode()
    for declared in ["10", "abc", "-1"]:
        r = client.post("/v1/sessions/m/update", content=big,
                        headers={"Content-Type": "application/json",
                                 "Content-Length": declared})
        assert_problem(r, 413, str(BYTES))
    r = client.post("/v1/sessions/m/update", content=b'{"values": [1]}',
                    headers={"Content-Type": "application/json", "Content-Length": "9" * 50})
    assert_problem(r, 413, str(BYTES))
    assert state(client) == before


def test_413_chunked_body_over_the_limit(client):
    before = state(client)

    def chunks():
        yield b'{"values": ['
        for _ in range(BYTES // 1000):
            yield b"0.5," * 250
        yield b"1]}"

    r = client.post("/v1/sessions/m/update", content=chunks(),
                    headers={"Content-Type": "application/json"})
    assert_problem(r, 413, str(BYTES))
    assert state(client) == before


def test_commas_bound_values_in_a_well_formed_body():
    """The pre-parse bound never refuses a well-formed body of `limit` elements (and an epoch):
    commas = values - 1."""
    for body in [{"values": [[1.0] * 10] * 100}, {"y_true": [1] * 500, "y_pred": [0.5] * 500},
                 {"values": [1] * ELEMENTS, "epoch": 3}]:
        codecs.check_json_elements_bound(json.dumps(body).encode(), ELEMENTS)


def _strings_below_keys(value):
    """How many string values (not keys) a decoded value holds, at any depth."""
    if isinstance(value, str):
        return 1
    if isinstance(value, list):
        return sum(_strings_below_keys(v) for v in value)
    if isinstance(value, dict):
        return sum(_strings_below_keys(v) for v in value.values())
    return 0


leaves = st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False), st.booleans(),
                   st.none(), st.text(max_size=3))
trees = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=15)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.dictionaries(st.text(max_size=4), trees, max_size=4))
def test_text_free_means_no_string_values(data):
    """The fast conversion path is taken only when no value can hold text."""
    body = orjson.dumps(data)
    if codecs._text_free(body, data):
        nested_keys = [k for v in data.values() if isinstance(v, dict)
                       for w in v.values() if isinstance(w, dict) for k in w]
        assert _strings_below_keys(data) == 0 and not nested_keys
