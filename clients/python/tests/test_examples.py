"""The examples in examples/, run as a user runs them, against a real uvicorn server."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from types import ModuleType

import keras
import pytest
from conftest import EXAMPLES

from tally_client import TallyClient


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", [[], ["--background"]], ids=["blocking", "background"])
def test_processes_sharing_one_auc_get_keras_auc_over_the_whole_data(server_url,
                                                                    session_name, mode):
    example = load_example("client_shared_auc")
    printed = run_example("client_shared_auc", "--url", server_url, "--session",
                          session_name, "--workers", "3", "--batch-size", "100", *mode)
    y_true, y_pred, weights = example.make_data()
    oracle = keras.metrics.AUC(**example.CONFIG)
    oracle.update_state(y_true, y_pred, sample_weight=weights)
    assert printed["workers"] == 3
    assert printed["result"] == pytest.approx(float(oracle.result()), rel=1e-5)


def test_keras_fit_with_the_callback_logs_the_closed_epochs(server_url, session_name):
    printed = run_example("client_keras_fit", "--url", server_url, "--session", session_name,
                          "--epochs", "3", env={"KERAS_BACKEND": "jax"})
    assert len(printed["shared"]) == 3
    # one worker: the shared AUC of each epoch is Keras' AUC on the same predictions
    assert printed["shared"] == pytest.approx(printed["local"], rel=1e-5)
    with TallyClient(server_url) as client:
        closed = client.history(session_name)["epochs"]
        assert [e["epoch"] for e in closed] == [0, 1, 2]
        assert [e["result"] for e in closed] == pytest.approx(printed["shared"], rel=1e-6)
        assert client.get(session_name)["epoch"] == 3
