"""A pytest plugin that runs Keras' own metric tests against Tally.

    KERAS_BACKEND=numpy .venv/bin/python -m pytest -p tests.keras_suite.plugin \
        --tally-report=report.json .venv/lib/python3.11/site-packages/keras/src/metrics

Before the test modules are imported, every `keras.metrics` class that Tally's catalogue
serves is replaced, in `keras.src.metrics`, in the family module that defines it, in the
public `keras.metrics` and in the name table of `keras.metrics.get`, by a proxy that drives a
Tally session over HTTP (see proxy.py). The
abstract `Metric` base class is left alone. With `--tally-report`, each test's outcome and the
number of requests it sent to Tally are written as JSON (what tests/test_keras_own_suite.py
compares with its list of expected non-passing tests).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any

import pytest

from tests.keras_suite import proxy

_outcomes: dict[str, dict[str, Any]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--tally-report", default=None,
                     help="write each test's outcome and Tally request count as JSON here")


def _metric_modules() -> list[Any]:
    import keras
    import keras.src.metrics as package

    modules = [package, keras.metrics]
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.endswith("_test"):
            modules.append(importlib.import_module(f"keras.src.metrics.{info.name}"))
    return modules


def install_proxies() -> list[str]:
    """Replace every served Keras class wherever the tests may look it up; the names."""
    import keras.src.metrics as package

    proxy.start()
    catalogue = proxy._call("GET", "/v1/metrics")["metrics"]
    modules = _metric_modules()
    replaced = []
    for entry in catalogue:
        original = getattr(package, entry["name"], None)
        if not isinstance(original, type) or original is package.Metric:
            continue
        stand_in = proxy.proxy_class(original, entry["name"], entry["inputs"])
        for module in modules:
            if getattr(module, entry["name"], None) is original:
                setattr(module, entry["name"], stand_in)
        # `keras.metrics.get("mse")` looks names and aliases up in this dict.
        for key, value in list(package.ALL_OBJECTS_DICT.items()):
            if value is original:
                package.ALL_OBJECTS_DICT[key] = stand_in
        replaced.append(entry["name"])
    return replaced


def pytest_configure(config: pytest.Config) -> None:
    install_proxies()


def pytest_unconfigure(config: pytest.Config) -> None:
    path = config.getoption("--tally-report")
    if path:
        with open(path, "w") as out:
            json.dump(_outcomes, out, indent=1, sort_keys=True)
    proxy.stop()


def _test_id(nodeid: str) -> str:
    """`keras/src/metrics/x_test.py::C::t` -> `x_test.py::C::t`, wherever keras lives."""
    return nodeid.rsplit("/", 1)[-1]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Any:
    proxy.take_request_count()
    yield
    entry = _outcomes.setdefault(_test_id(item.nodeid), {"outcome": "passed"})
    entry["requests"] = proxy.take_request_count()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _outcomes.setdefault(_test_id(report.nodeid), {"outcome": "passed"})
    if report.failed:
        entry["outcome"] = "failed"
        message = getattr(report.longrepr, "reprcrash", None)
        entry.setdefault("message", message.message if message else str(report.longrepr)[-300:])
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
