"""Auth (API 1.1): every route against every scope, prefix-limited tokens, missing and wrong
tokens, the open service; and the dependencies of the routes stay off the thread pool."""

from __future__ import annotations

import inspect
import itertools

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.api import catalogue, health, sessions
from app.api.app import create_app
from app.settings import Settings
from app.store.memory import MemoryStore

#: The contract's words: "read (GETs), write (create, update, merge, reset), admin (delete,
#: and everything write may)". Each scope includes the ones before it.
SCOPES = ("read", "write", "admin")
TOKENS = {
    **{f"{scope}-token": {"scopes": [scope]} for scope in SCOPES},
    "run42-writer": {"scopes": ["write"], "prefix": "run42."},
    "two-scopes": {"scopes": ["read", "write"]},
}
BATCH = {"y_true": [1, 0, 1], "y_pred": [0.8, 0.6, 0.3]}

#: (method, path under /v1 with {name}, body, scope the contract asks for, success status)
ROUTES = [
    ("GET", "/metrics", None, "read", 200),
    ("GET", "/sessions", None, "read", 200),
    ("PUT", "/sessions/{name}", {"metric": "Precision"}, "write", 200),
    ("GET", "/sessions/{name}", None, "read", 200),
    ("DELETE", "/sessions/{name}", None, "admin", 204),
    ("POST", "/sessions/{name}/update", BATCH, "write", 200),
    ("POST", "/sessions/{name}/merge",
     {"variables": {"true_positives": [1.0], "false_positives": [2.0]}}, "write", 200),
    ("GET", "/sessions/{name}/result", None, "read", 200),
    ("GET", "/sessions/{name}/variables", None, "read", 200),
    ("GET", "/sessions/{name}/slices", None, "read", 422),  # a session without slices
    ("GET", "/sessions/{name}/config", None, "read", 200),
    ("GET", "/sessions/{name}/history", None, "read", 200),
    ("POST", "/sessions/{name}/reset", None, "write", 200),
]
NAMED = [r for r in ROUTES if "{name}" in r[1]]
names = (f"s{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def client():
    settings = Settings.model_validate({"tokens": TOKENS})
    with TestClient(create_app(settings, store=MemoryStore())) as c:
        yield c


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def existing_session(client, name=None):
    """A Precision session with one batch, created with the admin token."""
    name = name or next(names)
    admin = bearer("admin-token")
    assert client.put(f"/v1/sessions/{name}", json={"metric": "Precision"},
                      headers=admin).status_code == 201
    assert client.post(f"/v1/sessions/{name}/update", json=BATCH, headers=admin).status_code \
        == 200
    return name


def call(client, route, name, headers):
    method, path, body, _, _ = route
    return client.request(method, "/v1" + path.format(name=name), json=body, headers=headers)


def state(client, name):
    admin = bearer("admin-token")
    return [client.get(f"/v1/sessions/{name}{tail}", headers=admin).json()
            for tail in ("", "/variables", "/history")]


def assert_problem(response, status, *fragments):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    for fragment in fragments:
        assert fragment in response.json()["detail"], response.json()["detail"]


def test_the_table_covers_every_v1_route(client):
    served = {(method.upper(), path) for path, item in client.app.openapi()["paths"].items()
              for method in item if path.startswith("/v1")}
    assert served == {(method, "/v1" + path) for method, path, *_ in ROUTES}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("route", ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES])
def test_every_route_against_every_scope(client, route, scope):
    name = existing_session(client)
    before = state(client, name)
    response = call(client, route, name, bearer(f"{scope}-token"))
    needed = route[3]
    if SCOPES.index(scope) >= SCOPES.index(needed):
        assert response.status_code == route[4], response.text
    else:
        assert_problem(response, 403, f"needs {needed!r}", scope)
        assert state(client, name) == before


@pytest.mark.parametrize("route", ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES])
@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Basic YWJjOmRlZg=="}, {"Authorization": "Bearer"},
    bearer("not-a-token"), bearer("read-token-but-longer"),
], ids=["none", "basic", "empty-bearer", "unknown", "prefix-of-nothing"])
def test_every_route_needs_a_valid_token(client, route, headers):
    name = existing_session(client)
    before = state(client, name)
    response = call(client, route, name, headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert state(client, name) == before


def test_a_token_with_several_scopes_has_the_highest(client):
    name = existing_session(client)
    assert call(client, ROUTES[-1], name, bearer("two-scopes")).status_code == 200  # reset
    assert_problem(call(client, ROUTES[4], name, bearer("two-scopes")), 403)  # delete


@pytest.mark.parametrize("route", NAMED, ids=[f"{r[0]} {r[1]}" for r in NAMED])
def test_a_prefix_limited_token_reaches_only_its_names(client, route):
    own = existing_session(client, f"run42.{next(names)}")
    other = existing_session(client, f"run43.{next(names)}")
    before = state(client, other)
    token = bearer("run42-writer")
    if route[3] == "admin":  # beyond the token's scope, whatever the name
        assert_problem(call(client, route, own, token), 403, "needs 'admin'")
    else:
        assert call(client, route, own, token).status_code == route[4]
        assert_problem(call(client, route, other, token), 403, "run42.", other)
    assert state(client, other) == before


def test_a_prefix_limited_token_lists_only_its_sessions(client):
    own = existing_session(client, f"run42.{next(names)}")
    existing_session(client, f"run43.{next(names)}")
    token = bearer("run42-writer")
    listed = [s["name"] for s in client.get("/v1/sessions", headers=token).json()["sessions"]]
    assert own in listed and all(n.startswith("run42.") for n in listed)
    assert client.get("/v1/sessions?prefix=run43.", headers=token).json()["sessions"] == []
    assert client.get("/v1/metrics", headers=token).status_code == 200


def test_operations_routes_need_no_token(client):
    for path in ("/healthz", "/readyz"):
        assert client.get(path).status_code == 200
        assert client.head(path).status_code == 200


@pytest.mark.parametrize("route", ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES])
def test_without_tokens_the_service_is_open(route):
    with TestClient(create_app(Settings(), store=MemoryStore())) as c:
        assert c.put("/v1/sessions/open", json={"metric": "Precision"}).status_code == 201
        assert c.post("/v1/sessions/open/update", json=BATCH).status_code == 200
        assert call(c, route, "open", {}).status_code == route[4]


def _dependencies(dependant):
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependencies(dependency)


def test_no_route_dependency_runs_in_the_thread_pool():
    """FastAPI runs a plain `def` dependency in the thread pool: a hop per request that the
    hot routes (update, result) must not pay."""
    routes = [r for router in (sessions.router, catalogue.router, health.router)
              for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) == len(ROUTES) + 4  # and GET, HEAD of /healthz and /readyz
    for route in routes:
        for dependency in _dependencies(route.dependant):
            assert dependency.call is not None
            assert inspect.iscoroutinefunction(dependency.call), (route.path, dependency.call)
