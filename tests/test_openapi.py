"""The OpenAPI document: committed copy current, every error answer a documented problem
document, the bearer scheme, 405 with `Allow`, HEAD probes; and docs/API.md is the contract."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.openapi import document
from app.settings import Settings
from app.store.memory import MemoryStore

ROOT = Path(__file__).parent.parent
CONTRACT = ROOT.parent / "shared" / "API.md"
PROBLEM = "application/problem+json"
METHODS = ("get", "head", "post", "put", "patch", "delete", "options", "trace")


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(), store=MemoryStore())) as c:
        yield c


@pytest.fixture(scope="module")
def schema(client):
    return client.get("/openapi.json").json()


def operations(schema):
    return [(path, method, op) for path, item in schema["paths"].items()
            for method, op in item.items()]


def test_committed_openapi_is_current():
    committed = ROOT / "openapi" / "openapi.json"
    assert committed.read_text() == document(), "run `make openapi` and commit the result"


def test_the_served_document_is_the_committed_one(schema):
    assert schema == json.loads((ROOT / "openapi" / "openapi.json").read_text())


@pytest.mark.skipif(not CONTRACT.exists(), reason="no ../shared/API.md beside this checkout")
def test_docs_api_is_the_contract_word_for_word():
    assert (ROOT / "docs" / "API.md").read_text() == CONTRACT.read_text()


def test_every_error_answer_is_a_problem_document(schema):
    for path, method, op in operations(schema):
        for status, answer in op["responses"].items():
            if int(status) >= 400:
                assert answer["content"] == {PROBLEM: {"schema": {
                    "$ref": "#/components/schemas/Problem"}}}, (method, path, status)
                assert answer["description"]
    problem = schema["components"]["schemas"]["Problem"]
    assert problem["required"] == ["type", "title", "status", "detail"]
    assert set(problem["properties"]) == {"type", "title", "status", "detail", "current_epoch"}


def test_no_framework_validation_schema_is_left(schema):
    text = json.dumps(schema)
    assert "HTTPValidationError" not in text and "ValidationError" not in text


def test_every_reference_resolves(schema):
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    for ref in refs:
        target = schema
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]


def test_errors_are_documented_where_the_route_can_give_them(schema):
    """A few facts of the contract per route, from its table of errors."""
    statuses = {(m.upper(), p): set(map(int, op["responses"])) for p, m, op in operations(schema)}
    bodies = [("PUT", "/v1/sessions/{name}"), ("POST", "/v1/sessions/{name}/update"),
              ("POST", "/v1/sessions/{name}/merge"), ("POST", "/v1/sessions/{name}/reset")]
    for route in bodies:  # a body: 400 413 415 422; a write: 503 504 507; an epoch: 409
        assert {400, 409, 413, 415, 422, 503, 504, 507} <= statuses[route], route
    for route, found in statuses.items():
        if route[1].startswith("/v1/"):
            assert 401 in found, route
        if "{name}" in route[1]:
            assert {403, 404, 503} <= found, route
        if route[0] == "GET" and route[1] != "/readyz":  # a full Redis is not ready (507)
            assert not found & {400, 409, 413, 415, 504, 507}, route
    assert statuses[("GET", "/healthz")] == {200}
    assert statuses[("GET", "/readyz")] == {200, 503, 507}
    assert statuses[("GET", "/v1/metrics")] == {200, 401}  # no store, no name
    assert statuses[("GET", "/metrics")] == {200, 401}  # a store that fails: tally_store_up


def test_bearer_scheme_on_every_v1_route(schema):
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, method, op in operations(schema):
        expected = [{"bearer": []}] if path.startswith("/v1/") or path == "/metrics" else None
        assert op.get("security") == expected, (method, path)


def test_every_405_has_allow_with_exactly_the_paths_methods(client, schema):
    for path, item in schema["paths"].items():
        concrete = path.replace("{name}", "some.session")
        documented = {m.upper() for m in item}
        for method in set(METHODS) - set(item):
            response = client.request(method.upper(), concrete)
            assert response.status_code == 405, (method, path)
            assert response.headers["content-type"].startswith(PROBLEM)
            allowed = {m.strip() for m in response.headers["allow"].split(",")}
            assert allowed == documented, (method, path)
            if method != "head":
                assert method.upper() in response.json()["detail"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_probes_answer_200_without_a_body(client, path):
    response = client.head(path)
    assert response.status_code == 200 and response.content == b""
