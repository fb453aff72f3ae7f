"""Stacked results (`Metric.results_stack`, `engine.stacked_results`): where a metric says its
`result()` works row by row on variables stacked along a new first axis, the results of
several states computed at once are exactly each state's own result. Checked on every case
of the catalogue, with states built from real batches (and an empty one: a session before
its first batch), then through a listing.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.metrics import engine
from app.metrics.collection import build_metric
from app.metrics.registry import builtin_registry
from app.settings import Settings
from app.store.state import State
from tests.cases import CASES, batches

os.environ.setdefault("KERAS_BACKEND", "numpy")
REGISTRY = builtin_registry()
SEEDS = (11, 12, 13)


def state_of(metric_name: str, config: dict[str, Any], kind: str, seed: int
             ) -> tuple[State, dict[str, Any] | None]:
    """The stored state after a few batches, as the stores add contributions up."""
    _, metric = build_metric(REGISTRY, metric_name, dict(config))
    state, layout = State(), None
    for batch in batches(kind, seed, count=3):
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in batch.items()}
        weight = arrays.pop("sample_weight", None)
        delta = engine.contribution(metric, arrays, weight, layout)
        layout = delta.layout
        state.add(delta.sum_runs)
        state.extreme(delta.max_runs, "max")
        state.extreme(delta.min_runs, "min")
    return state, layout


@pytest.mark.parametrize(("metric", "config", "kind"), CASES,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_stacked_results_are_each_states_own(metric, config, kind):
    built = [state_of(metric, config, kind, seed) for seed in SEEDS]
    layout = built[0][1]
    assert all(other == layout for _, other in built)
    states = [state for state, _ in built] + [State()]  # and a session before any batch
    _, instance = build_metric(REGISTRY, metric, dict(config))
    stacked = engine.stacked_results(instance, states, layout)
    one_by_one = [engine.result_json(instance, state, layout) for state in states]
    if stacked is None:
        return  # not declared (or not stackable here): the listing computes one by one
    assert instance.results_stack()
    assert stacked == one_by_one  # JSON values: exact, NaN as null in both


def test_the_common_dashboard_metrics_stack():
    """The declarations cover what dashboards list most (a guard against losing them)."""
    declared = set()
    for metric, config, _ in CASES:
        _, instance = build_metric(REGISTRY, metric, dict(config))
        if instance.results_stack():
            declared.add(metric)
    assert {"Mean", "Sum", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "Precision",
            "Recall", "TruePositives", "MeanSquaredError", "MeanAbsoluteError",
            "RootMeanSquaredError", "BinaryCrossentropy"} <= declared
    assert "AUC" not in declared  # its result reduces the thresholds' axis


def test_a_metric_that_does_not_declare_it_is_not_stacked():
    _, auc = build_metric(REGISTRY, "AUC", {})
    assert engine.stacked_results(auc, [State(), State()]) is None


def test_the_borrowed_metric_is_left_as_it_was():
    """Pool hygiene: after a stacked call the variables hold their initial values again."""
    _, precision = build_metric(REGISTRY, "Precision", {"thresholds": [0.3, 0.6]})
    states = [state_of("Precision", {"thresholds": [0.3, 0.6]}, "binary", s)[0]
              for s in SEEDS]
    assert engine.stacked_results(precision, states) is not None
    for variable in precision.variables:
        assert variable.value.shape == variable.initial_value.shape
        np.testing.assert_array_equal(variable.value, variable.initial_value)


@pytest.fixture
def client(api_store):
    with TestClient(create_app(Settings(), store=api_store)) as c:
        yield c


def test_a_listing_of_many_sessions_answers_each_sessions_result(client, monkeypatch):
    """Sessions of a few metrics, interleaved, some without a batch: the listing (stacked
    per metric) answers what each session's GET result answers."""
    calls = []
    original = engine.stacked_results

    def counted(metric, states, layout=None):
        results = original(metric, states, layout)
        calls.append((type(metric).__name__, len(states), results is not None))
        return results

    monkeypatch.setattr(engine, "stacked_results", counted)
    kinds = [("Precision", {}, "binary"), ("Mean", {}, "values"),
             ("Recall", {"thresholds": [0.2, 0.7]}, "binary"), ("AUC", {}, "binary")]
    for i in range(24):
        metric, config, kind = kinds[i % len(kinds)]
        name = f"s.{i:02d}"
        assert client.put(f"/v1/sessions/{name}",
                          json={"metric": metric, "config": config}).status_code == 201
        for batch in batches(kind, seed=i, count=i % 3):
            assert client.post(f"/v1/sessions/{name}/update", json=batch).status_code == 200
    listed = client.get("/v1/sessions", params={"prefix": "s.", "limit": 100}).json()
    assert len(listed["sessions"]) == 24
    assert sorted(calls) == [("AUC", 6, False), ("Mean", 6, True), ("Precision", 6, True),
                             ("Recall", 6, True)]  # AUC's six then went one by one
    for entry in listed["sessions"]:
        alone = client.get(f"/v1/sessions/{entry['name']}/result").json()
        assert entry["result"] == alone["result"], entry["name"]


def test_a_plugin_is_never_stacked(api_store):
    """A plugin subclassing Mean inherits its declaration but not necessarily its elementwise
    result: its sessions are computed one by one, and each lists its own result."""
    settings = Settings(plugins="tests.plugin_stacking")
    with TestClient(create_app(settings, store=api_store)) as client:
        for i in range(4):
            assert client.put(f"/v1/sessions/pooled.{i}",
                              json={"metric": "PooledMean"}).status_code == 201
            values = [float(i)] * (i + 1)
            assert client.post(f"/v1/sessions/pooled.{i}/update",
                               json={"values": values}).status_code == 200
        listed = client.get("/v1/sessions", params={"prefix": "pooled."}).json()["sessions"]
        assert [entry["result"] for entry in listed] == [0.0, 1.0, 2.0, 3.0]
