"""Keras' own metric test-suite (`keras/src/metrics/*_test.py`, shipped in the keras wheel),
run against Tally: every `keras.metrics` class replaced by a proxy that drives a session of
the in-process app over HTTP (tests/keras_suite/). The suite runs once, in a subprocess (the
replacement must not leak into the other tests, which use real Keras as the oracle).

Every test must pass, except those listed in tests/keras_suite/expected.py with the reason,
which must fail for that reason; tests that pass without sending any request to Tally must be
listed as Keras-only. To run it by hand (with Keras' own output):

    KERAS_BACKEND=numpy .venv/bin/python -m pytest -p tests.keras_suite.plugin \\
        .venv/lib/python3.11/site-packages/keras/src/metrics
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.keras_suite.expected import DIFFERENCE, EXPECTED, KERAS_ONLY, NOT_APPLICABLE

ROOT = Path(__file__).resolve().parent.parent


def _keras_metric_tests() -> Path:
    import keras.src.metrics

    return Path(keras.src.metrics.__path__[0])


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict[str, dict[str, Any]]:
    path = tmp_path_factory.mktemp("keras_suite") / "report.json"
    env = {**os.environ, "KERAS_BACKEND": "numpy"}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.keras_suite.plugin",
         f"--tally-report={path}", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "-W", "ignore", str(_keras_metric_tests())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert path.exists(), f"the suite did not run:\n{completed.stdout[-3000:]}\n" \
                          f"{completed.stderr[-3000:]}"
    outcomes: dict[str, dict[str, Any]] = json.loads(path.read_text())
    return outcomes


def _describe(entry: dict[str, Any]) -> str:
    return f"{entry['outcome']} ({entry.get('message', '')[:300]})"


def test_every_unlisted_keras_test_passes_against_tally(report):
    unexpected = {test: _describe(entry) for test, entry in report.items()
                  if entry["outcome"] != "passed" and test not in EXPECTED}
    assert unexpected == {}


def test_listed_tests_fail_for_the_listed_reason(report):
    wrong = {}
    for test, (category, _reason, fragment) in EXPECTED.items():
        entry = report.get(test)
        assert category in (NOT_APPLICABLE, DIFFERENCE)
        if entry is None:
            wrong[test] = "no longer in Keras' suite: remove it from the list"
        elif entry["outcome"] == "passed":
            wrong[test] = "passes now: remove it from the list"
        elif fragment not in entry.get("message", ""):
            wrong[test] = f"fails for another reason than {fragment!r}: {_describe(entry)}"
    assert wrong == {}


def test_only_the_listed_keras_only_tests_pass_without_asking_tally(report):
    silent = {test for test, entry in report.items()
              if entry["outcome"] == "passed" and entry["requests"] == 0}
    assert silent == set(KERAS_ONLY)


def test_counts(report):
    """The summary the README quotes; also guards against a suite that shrank to nothing."""
    counts = Counter()
    for test, entry in report.items():
        if test in KERAS_ONLY:
            counts["keras only (not applicable)"] += 1
        elif test in EXPECTED:
            counts[EXPECTED[test][0]] += 1
        else:
            counts[entry["outcome"]] += 1
    print(dict(counts))
    assert counts["passed"] > len(EXPECTED) + len(KERAS_ONLY)
    files = {test.split("::")[0] for test in report}
    assert len(files) >= 10, sorted(files)
