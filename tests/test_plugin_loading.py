"""Plugin loading: a plugin reached twice (an installed entry point that TALLY_PLUGINS also
names, a module named twice, a class and its module) loads once; two different classes with one
name are still refused; each loaded plugin is logged once when the service starts.

The example plugins (examples/plugins) are installed in the test virtualenv by `make test`, so
their `tally.metrics` entry points are there."""

from __future__ import annotations

import importlib.metadata
import logging

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.errors import ConfigError
from app.metrics import plugins
from app.metrics.plugins import ENTRY_POINT_GROUP, load_plugins
from app.metrics.registry import builtin_registry
from app.settings import Settings
from app.store.memory import MemoryStore


def catalogue_names(client: TestClient) -> list[str]:
    return [m["name"] for m in client.get("/v1/metrics").json()["metrics"]]


def plugin_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "tally" and r.getMessage().startswith("metric plugin ")]


def test_the_examples_are_installed_as_entry_points():
    names = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert {"huber", "binary_true_positives"} <= names


def test_a_module_from_tally_plugins_and_an_entry_point_loads_once():
    registry = builtin_registry()
    loaded = load_plugins(registry, ["tally_examples.huber"])
    huber = [line for line in loaded if line.startswith("tally_examples.huber ")]
    assert huber == ["tally_examples.huber (from entry point huber, TALLY_PLUGINS): HuberMetric"]
    assert registry.resolve("HuberMetric").builtin is False


def test_the_service_starts_with_a_plugin_named_both_ways():
    settings = Settings(plugins="tally_examples.huber, tally_examples.true_positives")
    with TestClient(create_app(settings, store=MemoryStore())) as client:
        names = catalogue_names(client)
        assert names.count("HuberMetric") == 1 and names.count("BinaryTruePositives") == 1
        created = client.put("/v1/sessions/h", json={"metric": "HuberMetric"})
        assert created.status_code == 201, created.text


def test_a_module_named_twice_loads_once():
    loaded = load_plugins(builtin_registry(), ["tests.plugin_samples", "tests.plugin_samples"],
                          entry_points=False)
    assert loaded == ["tests.plugin_samples (from TALLY_PLUGINS): MaxAbsoluteError, "
                      "ExponentialAverage, smape"]


def test_a_class_from_an_entry_point_and_its_module_register_once(monkeypatch):
    entry = importlib.metadata.EntryPoint(name="max_error", group=ENTRY_POINT_GROUP,
                                          value="tests.plugin_samples:MaxAbsoluteError")
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points",
                        lambda group: [entry] if group == ENTRY_POINT_GROUP else [])
    registry = builtin_registry()
    loaded = load_plugins(registry, ["tests.plugin_samples"])
    assert loaded == [
        "tests.plugin_samples:MaxAbsoluteError (from entry point max_error): MaxAbsoluteError",
        "tests.plugin_samples (from TALLY_PLUGINS): ExponentialAverage, smape",
    ]
    assert registry.resolve("MaxAbsoluteError").cls.__module__ == "tests.plugin_samples"


def test_two_different_classes_with_one_name_are_still_refused(tmp_path, monkeypatch):
    (tmp_path / "other_max_error.py").write_text(
        "import numpy as np\n"
        "from app.metrics import Metric\n\n"
        "class MaxAbsoluteError(Metric):\n"
        "    def __init__(self, name='max_absolute_error', dtype=None):\n"
        "        super().__init__(name=name, dtype=dtype)\n"
        "        self.total = self.add_variable(shape=(), name='total')\n\n"
        "    def update_state(self, y_true, y_pred, sample_weight=None):\n"
        "        self.total.assign(self.total + np.sum(np.abs(np.asarray(y_true) - y_pred)))\n\n"
        "    def result(self):\n"
        "        return self.total\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="MaxAbsoluteError"):
        load_plugins(builtin_registry(), ["tests.plugin_samples", "other_max_error"],
                     entry_points=False)


def test_each_plugin_is_logged_once_when_the_service_starts(caplog):
    caplog.set_level(logging.INFO, logger="tally")
    app = create_app(Settings(plugins="tally_examples.huber,tests.plugin_samples"),
                     store=MemoryStore())
    assert plugin_lines(caplog) == []  # building the app (a pre-flight check) logs nothing
    with TestClient(app):
        lines = plugin_lines(caplog)
    assert sorted(lines) == [
        "metric plugin tally_examples.huber (from entry point huber, TALLY_PLUGINS): "
        "HuberMetric",
        "metric plugin tally_examples.true_positives (from entry point "
        "binary_true_positives): BinaryTruePositives",
        "metric plugin tests.plugin_samples (from TALLY_PLUGINS): MaxAbsoluteError, "
        "ExponentialAverage, smape",
    ]
