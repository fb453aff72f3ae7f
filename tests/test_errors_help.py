"""Errors that help: an unknown metric names the closest ones, and a path that matches no
route (a TensorBoard-style name `run1/val`) says what a session name may hold."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.metrics.plugins import load_plugins
from app.metrics.registry import builtin_registry
from app.settings import Settings
from app.store.memory import MemoryStore

PROBLEM = "application/problem+json"


@pytest.fixture
def client():
    with TestClient(create_app(Settings(), store=MemoryStore())) as c:
        yield c


def problem(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    return body["detail"]


# -- unknown metric ------------------------------------------------------------------------
@pytest.mark.parametrize(("asked", "meant"), [
    ("Precison", "Precision"),
    ("precison", "Precision"),
    ("PRECISON", "Precision"),
    ("Recal", "Recall"),
    ("mean_squared_eror", "mean_squared_error"),
    ("SparseTopKCategoricalAcc", "SparseTopKCategoricalAccuracy"),
    ("F1score", "F1Score"),
])
def test_an_unknown_metric_suggests_the_nearest_name(client, asked, meant):
    detail = problem(client.put("/v1/sessions/s", json={"metric": asked}), 404)
    assert f"unknown metric class {asked!r}; did you mean {meant!r}" in detail
    assert "GET /v1/metrics" in detail
    assert client.get("/v1/sessions/s").status_code == 404  # nothing was created


def test_a_name_close_to_nothing_gets_no_suggestion(client):
    detail = problem(client.put("/v1/sessions/s", json={"metric": "Zzyzx"}), 404)
    assert "did you mean" not in detail
    assert "GET /v1/metrics lists the" in detail


def test_suggestions_name_each_class_once_closest_first():
    registry = builtin_registry()
    close = registry.suggestions("precision_recal")
    assert len(close) == len({registry.resolve(name).name for name in close})
    assert registry.suggestions("Precison")[0] == "Precision"
    assert registry.suggestions("msee")[0].lower() == "mse"  # aliases are candidates too
    assert len(registry.suggestions("Mean", n=2)) == 2


def test_plugin_metrics_are_suggested_too():
    registry = builtin_registry()
    load_plugins(registry, ["tests.plugin_samples"], entry_points=False)
    assert registry.suggestions("MaxAbsolutError")[0] == "MaxAbsoluteError"


# -- a path that matches no route ----------------------------------------------------------
NAME_RULE = "letters, digits and . _ : -"


@pytest.mark.parametrize(("method", "path", "dotted"), [
    ("GET", "/v1/sessions/run1/val/result", "/v1/sessions/run1.val/result"),
    ("POST", "/v1/sessions/run1/val/update", "/v1/sessions/run1.val/update"),
    ("POST", "/v1/sessions/run1/val/reset", "/v1/sessions/run1.val/reset"),
    ("GET", "/v1/sessions/run1/val", "/v1/sessions/run1.val"),
    ("PUT", "/v1/sessions/exp/run1/val/auc", "/v1/sessions/exp.run1.val.auc"),
    ("DELETE", "/v1/sessions/a/b/c/variables", "/v1/sessions/a.b.c/variables"),
])
def test_a_slash_in_a_session_name_is_explained(client, method, path, dotted):
    detail = problem(client.request(method, path), 404)
    assert f"no route matches {path}" in detail
    assert NAME_RULE in detail and "cannot hold '/'" in detail
    assert "use dots for hierarchy" in detail and dotted in detail


def test_the_explanation_lists_a_sessions_routes(client):
    detail = problem(client.get("/v1/sessions/x/resul"), 404)
    assert "/v1/sessions/{name}/{" in detail
    for route in ("result", "update", "reset", "variables", "history", "config", "merge"):
        assert route in detail


def test_a_path_outside_the_sessions_says_where_the_routes_are(client):
    assert problem(client.get("/v2/sessions"), 404) == \
        "no route matches /v2/sessions; GET /docs lists every route"


def test_a_very_long_path_is_cut_in_the_detail(client):
    detail = problem(client.get("/v1/sessions/" + "a/" * 2000 + "result"), 404)
    assert len(detail) < 1200


def test_a_bad_name_in_one_segment_keeps_its_own_answer(client):
    detail = problem(client.get("/v1/sessions/bad%20name/result"), 404)
    assert "no session named 'bad name'" in detail


def test_an_unknown_session_is_still_a_plain_404(client):
    detail = problem(client.get("/v1/sessions/run1.val/result"), 404)
    assert "no route" not in detail and "run1.val" in detail


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("DELETE", "/v1/sessions/x/result", "GET"),
    ("GET", "/v1/sessions/x/update", "POST"),
    ("POST", "/v1/sessions/x", "GET, PUT, DELETE"),
])
def test_a_wrong_method_is_still_a_405_with_allow(client, method, path, allow):
    detail = problem(client.request(method, path), 405)
    assert client.request(method, path).headers["allow"] == allow
    assert detail == f"this path answers {allow}; got {method}"
