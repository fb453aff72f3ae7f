"""Real Keras (numpy backend) as the oracle for every metric.

`check_parity` feeds the same batches to a Keras metric and to Tally's engine (state summed
from per-batch contributions, exactly as the stores do) and compares result, variables and
config after every batch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "numpy")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from app.metrics import engine  # noqa: E402
from app.metrics.registry import REGISTRY  # noqa: E402
from app.store.state import State  # noqa: E402

RTOL = 1e-5
ATOL = 1e-6

Batch = dict[str, Any]  # {"y_true":..., "y_pred":..., "sample_weight":...} or {"values":...}


def keras_metric(name: str, config: dict[str, Any] | None = None) -> Any:
    spec = REGISTRY.resolve(name)
    config = dict(config or {})
    if isinstance(config.get("fn"), str):  # MeanMetricWrapper: the Keras function of that name
        config["fn"] = getattr(keras.metrics, config["fn"])
    return getattr(keras.metrics, spec.name)(**config)


def keras_update(metric: Any, batch: Batch) -> None:
    kwargs = {k: np.asarray(v) if isinstance(v, list) else v for k, v in batch.items()}
    metric.update_state(**kwargs)


def keras_variables(metric: Any) -> list[tuple[str, np.ndarray]]:
    return [(v.name, np.asarray(keras.ops.convert_to_numpy(v))) for v in metric.variables]


def normalise_config(config: dict[str, Any]) -> dict[str, Any]:
    """Keras suffixes auto-generated names (`precision_3`); compare the base name."""
    out = {}
    for key, value in config.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        out[key] = value
    if isinstance(out.get("name"), str):
        out["name"] = re.sub(r"_\d+$", "", out["name"])
    return out


def assert_close(actual: Any, expected: Any, what: str) -> None:
    a = np.asarray(actual if actual is not None else np.nan, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != keras {e.shape}"
    a = np.where(np.equal(a, None), np.nan, a).astype(np.float64) if a.dtype == object else a
    np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=what)


def json_array(value: Any) -> np.ndarray:
    """A JSON result/variable value (nulls for NaN) as a float array."""
    if isinstance(value, list):
        return np.array([json_array(v) for v in value], dtype=np.float64)
    return np.asarray(np.nan if value is None else value, dtype=np.float64)


def tally_inputs(batch: Batch) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in batch.items()
              if k != "sample_weight"}
    weight = batch.get("sample_weight")
    return arrays, None if weight is None else np.asarray(weight, dtype=np.float32)


def check_parity(name: str, config: dict[str, Any] | None, batches: Iterable[Batch]) -> None:
    """Compare Keras and Tally after every batch: result, variables, config."""
    reference = keras_metric(name, config)
    _, metric = REGISTRY.build(name, config)
    assert normalise_config(metric.get_config()) == normalise_config(
        reference.get_config() if "fn" not in (config or {}) else {**reference.get_config(),
                                                                   "fn": config["fn"]})
    state = State()
    layout = None
    for step, batch in enumerate(batches):
        keras_update(reference, batch)
        arrays, weight = tally_inputs(batch)
        delta = engine.contribution(metric, arrays, weight, layout)
        layout = delta.layout
        state.add(delta.sum_runs)
        state.extreme(delta.max_runs, "max")
        state.extreme(delta.min_runs, "min")
        where = f"{name}({config}) after batch {step}"
        expected = np.asarray(keras.ops.convert_to_numpy(reference.result()))
        assert_close(json_array(engine.result_json(metric, state, layout)), expected,
                     f"{where}: result")
        ours = engine.variables_json(metric, state, layout)
        theirs = keras_variables(reference)
        assert [v["name"] for v in ours] == [n for n, _ in theirs], f"{where}: variable names"
        for v, (_, value) in zip(ours, theirs, strict=True):
            assert_close(json_array(v["value"]), value, f"{where}: variable {v['name']}")
