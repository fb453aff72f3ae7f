"""Turns a `Metric` object into the two pure functions the service needs.

* `contribution(metric, inputs)`: what one batch adds to the state, as sparse per-element
  increments grouped by aggregation. It runs the metric's own `update_state` on freshly
  initialised variables, so any metric written the Keras way works without knowing about us.
* `load_state(metric, fields)` then `metric.result()`: the result for a stored state.

State travels as a flat map `"<variable>:<flat index>" -> float`, holding only elements that
differ from the initial value: the stores add, max or min them without knowing what they mean.
A `cumulative` variable travels as its per-bucket differences (see `Variable.cumulative`).

Lazily shaped metrics (see `Metric.lazy`) are built from the session's *layout*, the small
dict that the session's first batch fixed; every function here takes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.errors import BadRequest, InvalidInput
from app.metrics.base import Metric, Variable


@dataclass
class Contribution:
    """One batch's increments, keyed by state field."""

    sums: dict[str, float] = field(default_factory=dict)
    maxes: dict[str, float] = field(default_factory=dict)
    mins: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    layout: dict[str, Any] | None = None  # the layout a lazy metric was built with


def field_name(variable: str, index: int) -> str:
    return f"{variable}:{index}"


def to_differences(array: np.ndarray) -> np.ndarray:
    """A reverse cumulative sum along axis 0 as its per-bucket differences (linear, so sums of
    differences are differences of sums)."""
    out = array.copy()
    if array.ndim and array.shape[0] > 1:
        out[:-1] -= array[1:]
    return out


def from_differences(array: np.ndarray) -> np.ndarray:
    if not array.ndim:
        return array
    return np.flip(np.cumsum(np.flip(array, 0), axis=0), 0)


def _add_fields(target: Contribution, variable: Variable, value: np.ndarray) -> None:
    """Record `value` (the variable after one update from its initial value) as increments."""
    initial = variable.initial_value.astype(np.float64)
    after = np.asarray(value, dtype=np.float64)
    if variable.aggregation == "sum":
        delta = after - initial
        if variable.cumulative:
            delta = to_differences(delta)
        delta = delta.ravel()
        changed = np.flatnonzero((delta != 0) | np.isnan(delta))
        bucket, values = target.sums, delta
    else:
        initial, after = initial.ravel(), after.ravel()
        changed = np.flatnonzero((after != initial) | np.isnan(after))
        bucket = target.maxes if variable.aggregation == "max" else target.mins
        values = after
    for i in changed.tolist():
        bucket[field_name(variable.name, i)] = float(values[i])


def count_samples(inputs: dict[str, np.ndarray]) -> int:
    """Samples in a batch: the length of the first input's first axis (1 for a scalar)."""
    first = next(iter(inputs.values()))
    return int(first.shape[0]) if first.ndim else 1


def prepare(metric: Metric, layout: dict[str, Any] | None) -> None:
    """Build (or unbuild) a lazy metric for a session's layout."""
    if not metric.lazy:
        return
    if layout is None:
        if metric.built:
            metric.unbuild()
    elif metric.layout != layout:
        metric.build(layout)


def _update(metric: Metric, inputs: dict[str, np.ndarray],
            sample_weight: np.ndarray | None) -> None:
    """One `update_state`, with numpy's own shape errors reported as the caller's bad input."""
    try:
        with np.errstate(all="ignore"):
            metric.update_state(**inputs, sample_weight=sample_weight)
    except InvalidInput:
        raise
    except (ValueError, IndexError, TypeError) as exc:
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in inputs.items())
        if sample_weight is not None:
            shapes += f", sample_weight {list(np.shape(sample_weight))}"
        raise InvalidInput(f"{type(metric).__name__} cannot take this batch ({shapes}): {exc}")\
            from None


def contribution(metric: Metric, inputs: dict[str, np.ndarray],
                 sample_weight: np.ndarray | None,
                 layout: dict[str, Any] | None = None, *,
                 check_additive: bool = False) -> Contribution:
    """One batch's increments. With `check_additive` (a plugin's first batches), also refuse
    a metric whose update is not a pure increment of its state: Tally can serve a metric only
    if `update_state` adds to `sum` variables, or takes the max / min into `max` / `min`
    variables, without reading them otherwise. A second identical update tells: a sum must
    move exactly twice as far, a max/min not at all."""
    prepare(metric, layout)
    metric.reset_state()
    _update(metric, inputs, sample_weight)
    result = Contribution(samples=count_samples(inputs), layout=metric.layout)
    for variable in metric.variables:
        _add_fields(result, variable, variable.value)
    if check_additive:
        once = [np.array(v.value, dtype=np.float64) for v in metric.variables]
        _update(metric, inputs, sample_weight)
        _check_twice(metric, once)
    return result


def _check_twice(metric: Metric, once: list[np.ndarray]) -> None:
    for variable, first in zip(metric.variables, once, strict=True):
        twice = np.asarray(variable.value, dtype=np.float64)
        initial = variable.initial_value.astype(np.float64)
        expected = initial + 2 * (first - initial) if variable.aggregation == "sum" else first
        if not np.allclose(twice, expected, rtol=1e-5, atol=1e-6, equal_nan=True):
            raise InvalidInput(
                f"{type(metric).__name__} cannot be served: its update_state changes variable "
                f"{variable.name!r} in a way that is not a '{variable.aggregation}' aggregation "
                f"(two identical batches from the initial state gave {twice.ravel()[:4]}, an "
                f"aggregation would give {expected.ravel()[:4]}). Tally needs updates of the "
                "form var.assign_add(f(batch)) (sum), or max/min against the batch only")


def merge_contribution(metric: Metric, values: dict[str, Any],
                       layout: dict[str, Any] | None = None) -> Contribution:
    """Pre-aggregated variables (as Keras `merge_state` takes them) as increments."""
    prepare(metric, layout)
    if not metric.built:
        raise InvalidInput(f"{type(metric).__name__} takes its variables' shapes from the "
                           "session's first update; send an update before merging")
    by_name = {v.name: v for v in metric.variables}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise InvalidInput(f"unknown variable(s) {unknown} for {type(metric).__name__}; "
                           f"expected names among {list(by_name)}")
    result = Contribution(samples=0, layout=metric.layout)
    for name, raw in values.items():
        variable = by_name[name]
        try:
            array = np.asarray(raw, dtype=np.float64)
        except (ValueError, TypeError):
            raise BadRequest(f"variable {name!r} must be numbers with shape "
                             f"{list(variable.shape)}; got {raw!r:.200}") from None
        if array.shape != variable.shape:
            raise InvalidInput(f"variable {name!r} must have shape {list(variable.shape)}; "
                               f"got shape {list(array.shape)}")
        if not np.all(np.isfinite(array)):
            raise InvalidInput(f"variable {name!r} contains NaN or infinity")
        if variable.aggregation == "sum":
            array = array + variable.initial_value
        _add_fields(result, variable, array)
    return result


def load_state(metric: Metric, fields: dict[str, float],
               layout: dict[str, Any] | None = None) -> None:
    """Set the metric's variables from stored fields (absent fields are initial values)."""
    prepare(metric, layout)
    by_name = {v.name: v for v in metric.variables}
    flat = {name: np.zeros(v.value.size) if v.aggregation == "sum"
            else v.initial_value.astype(np.float64).ravel() for name, v in by_name.items()}
    for key, value in fields.items():
        name, _, index = key.rpartition(":")
        if name not in flat:
            continue  # a field from an older layout; ignore it rather than fail a read
        variable = by_name[name]
        i = int(index)
        if i >= flat[name].size:
            continue
        if variable.aggregation == "sum":
            flat[name][i] += value
        elif variable.aggregation == "max":
            flat[name][i] = max(flat[name][i], value)
        else:
            flat[name][i] = min(flat[name][i], value)
    for name, variable in by_name.items():
        array = flat[name].reshape(variable.shape)
        if variable.aggregation == "sum":
            if variable.cumulative:
                array = from_differences(array)
            array = array + variable.initial_value
        variable.value = np.asarray(array)


def to_json(value: Any) -> Any:
    """A result or variable value as JSON: a number or nested lists; NaN becomes null."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        number = float(array)
        return number if np.isfinite(number) else None
    return [to_json(x) for x in array] if array.ndim > 1 else [
        float(x) if np.isfinite(x) else None for x in array.tolist()
    ]


def result_json(metric: Metric, fields: dict[str, float],
                layout: dict[str, Any] | None = None) -> Any:
    """The JSON result; null for a lazy metric before its first update (Keras raises)."""
    load_state(metric, fields, layout)
    if not metric.built:
        return None
    with np.errstate(all="ignore"):
        return to_json(metric.result())


def variables_json(metric: Metric, fields: dict[str, float],
                   layout: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    load_state(metric, fields, layout)
    return [
        {"name": v.name, "shape": list(v.shape), "dtype": v.dtype, "value": to_json(v.value)}
        for v in metric.variables
    ]


def describe_variables(metric: Metric, layout: dict[str, Any] | None = None
                       ) -> list[dict[str, Any]]:
    prepare(metric, layout)
    return [{"name": v.name, "shape": list(v.shape), "dtype": v.dtype} for v in metric.variables]
