"""Turns a `Metric` object into the two pure functions the service needs.

* `contribution(metric, inputs)`: what one batch adds to the state, as runs of increments over
  the state's flat spaces. It runs the metric's own `update_state` on freshly initialised
  variables, so any metric written the Keras way works without knowing about us.
* `load_state(metric, state)` then `metric.result()`: the result for a stored state.

The variables are laid out in two flat spaces (`slots`, `store/state.py`): every `sum`
variable in the sum space, `max`/`min` variables in the extreme space, each at an offset given
by the variables before it. A `cumulative` variable travels as its per-bucket differences (see
`Variable.cumulative`), so a batch touches only the buckets its predictions fall in.

Lazily shaped metrics (see `Metric.lazy`) are built from the session's *layout*, the small
dict that the session's first batch fixed; every function here takes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.errors import BadRequest, InvalidInput
from app.metrics.base import Metric, Variable
from app.store.state import SUM_GAP, Runs, State


@dataclass
class Slot:
    variable: Variable
    offset: int  # in the sum space (aggregation "sum") or the extreme space (max / min)


@dataclass
class Contribution:
    """One batch's increments: runs over the sum space, and max/min runs over the extremes.

    `sums`, `maxes` and `mins` are the same increments as a readable map
    `"<variable>:<flat index>" -> value` (tests and debugging; `load_state` takes it too)."""

    sum_runs: Runs = field(default_factory=Runs)
    max_runs: Runs = field(default_factory=Runs)
    min_runs: Runs = field(default_factory=Runs)
    samples: int = 0
    layout: dict[str, Any] | None = None  # the layout a lazy metric was built with
    slots: list[Slot] = field(default_factory=list)

    @property
    def sums(self) -> dict[str, float]:
        return _named(self.sum_runs, [s for s in self.slots if s.variable.aggregation == "sum"])

    @property
    def maxes(self) -> dict[str, float]:
        return _named(self.max_runs, [s for s in self.slots if s.variable.aggregation != "sum"])

    @property
    def mins(self) -> dict[str, float]:
        return _named(self.min_runs, [s for s in self.slots if s.variable.aggregation != "sum"])


def _named(runs: Runs, space: list[Slot]) -> dict[str, float]:
    out: dict[str, float] = {}
    for index, value in zip(runs.indices().tolist(), runs.values.tolist(), strict=True):
        if value == 0:
            continue  # a bridged gap, not an increment
        for slot in space:
            if slot.offset <= index < slot.offset + slot.variable.initial_value.size:
                out[field_name(slot.variable.name, index - slot.offset)] = value
                break
    return out


def field_name(variable: str, index: int) -> str:
    return f"{variable}:{index}"


def state_from_named(metric: Metric, named: Mapping[str, float]) -> State:
    """A `State` from the readable map of `Contribution.sums` (and maxes/mins)."""
    state = State()
    sums: dict[int, float] = {}
    extremes: dict[int, float] = {}
    for slot in slots(metric):
        for i in range(int(slot.variable.initial_value.size)):
            value = named.get(field_name(slot.variable.name, i))
            if value is not None:
                target = sums if slot.variable.aggregation == "sum" else extremes
                target[slot.offset + i] = value
    state.add(Runs.from_dict(sums))
    state.extreme(Runs.from_dict(extremes), "max")
    return state


def slots(metric: Metric) -> list[Slot]:
    """Where each stored variable lives in the stored state (in variable order, per space)."""
    out, next_sum, next_extreme = [], 0, 0
    for variable in metric.stored_variables:
        size = int(variable.initial_value.size)
        if variable.aggregation == "sum":
            out.append(Slot(variable, next_sum))
            next_sum += size
        else:
            out.append(Slot(variable, next_extreme))
            next_extreme += size
    return out


def space_sizes(metric: Metric) -> tuple[int, int]:
    """Elements of the metric's state in the sum space and in the extreme space: one slice's
    stride in the slices' strings (store/keys.py)."""
    sums = extremes = 0
    for variable in metric.stored_variables:
        if variable.aggregation == "sum":
            sums += int(variable.initial_value.size)
        else:
            extremes += int(variable.initial_value.size)
    return sums, extremes


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


#: A `sum` variable of at most this many elements travels whole (one run) when a batch moved
#: it: for small states, finding the touched elements costs more numpy calls than the zeros
#: it saves (a small-batch update is a hot path).
SMALL_VARIABLE = 64


class _RunsCollector:
    """Runs of one batch, gathered per variable and concatenated once."""

    def __init__(self) -> None:
        self.parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
            "sum": [], "max": [], "min": []}

    def whole(self, kind: str, offset: int, values: np.ndarray) -> None:
        """One run of `values` from `offset`; joined to the previous whole variable when it
        ends there (Precision's two counts travel as one run: one write in the store)."""
        parts = self.parts[kind]
        if parts and parts[-1][0].size == 1 and int(parts[-1][0][0] + parts[-1][1][0]) == offset:
            starts, counts, before = parts[-1]
            parts[-1] = (starts, counts + values.size, np.concatenate((before, values)))
            return
        parts.append((np.array([offset]), np.array([values.size]), values))

    def runs(self, kind: str, runs: Runs, offset: int) -> None:
        if len(runs):
            self.parts[kind].append((runs.starts + offset, runs.counts, runs.values))

    def build(self, kind: str) -> Runs:
        parts = self.parts[kind]
        if not parts:
            return Runs()
        if len(parts) == 1:
            return Runs(*parts[0])
        starts, counts, values = zip(*parts, strict=True)
        return Runs(np.concatenate(starts), np.concatenate(counts), np.concatenate(values))


def _add_runs(target: _RunsCollector, slot: Slot, value: np.ndarray) -> None:
    """Record `value` (the variable after one update from its initial value) as runs."""
    variable = slot.variable
    initial = variable.initial_value.astype(np.float64)
    after = np.asarray(value, dtype=np.float64)
    if variable.aggregation == "sum":
        delta = after - initial
        if variable.cumulative:
            delta = to_differences(delta)
        delta = delta.ravel()
        if delta.size <= SMALL_VARIABLE:
            if delta.any():  # NaN counts as a change: it poisons the state, as in Keras
                target.whole("sum", slot.offset, delta)
            return
        changed = np.flatnonzero((delta != 0) | np.isnan(delta))
        target.runs("sum", Runs.from_indices(changed, delta, SUM_GAP), slot.offset)
        return
    initial, after = initial.ravel(), after.ravel()
    changed = np.flatnonzero((after != initial) | np.isnan(after))
    target.runs(variable.aggregation, Runs.from_indices(changed, after), slot.offset)


def _contribution_of(samples: int, metric: Metric, slot_list: list[Slot],
                     values: list[np.ndarray]) -> Contribution:
    collector = _RunsCollector()
    for slot, value in zip(slot_list, values, strict=True):
        _add_runs(collector, slot, value)
    return Contribution(collector.build("sum"), collector.build("max"), collector.build("min"),
                        samples, metric.layout, slot_list)


def count_samples(inputs: dict[str, np.ndarray]) -> int:
    """Samples in a batch: the length of the first input's first axis (1 for a scalar)."""
    first = next(iter(inputs.values()))
    return int(first.shape[0]) if first.ndim else 1


def prepare(metric: Metric, layout: dict[str, Any] | None) -> None:
    """Build (or unbuild) a lazy metric for a session's layout."""
    if not metric.lazy:
        return
    if layout is None:
        if metric.layout is not None:  # built (or, in a collection, partly built)
            metric.unbuild()
    elif metric.layout != layout:
        metric.build(layout)


def run_update(metric: Metric, inputs: dict[str, np.ndarray],
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
    run_update(metric, inputs, sample_weight)
    slot_list = slots(metric)
    result = _contribution_of(count_samples(inputs), metric, slot_list,
                              [s.variable.value for s in slot_list])
    if check_additive:
        once = [np.array(v.value, dtype=np.float64) for v in metric.variables]
        run_update(metric, inputs, sample_weight)
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
    by_name = {s.variable.name: s for s in slots(metric)}
    known = [v.name for v in metric.variables]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InvalidInput(f"unknown variable(s) {unknown} for {type(metric).__name__}; "
                           f"expected names among {known}")
    given: dict[str, np.ndarray] = {}
    for name, raw in _stored_values(metric, values).items():
        slot = by_name[name]
        variable = slot.variable
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
        given[name] = array + variable.initial_value if variable.aggregation == "sum" else array
    chosen = [s for s in by_name.values() if s.variable.name in given]  # in variable order
    merged = _contribution_of(0, metric, chosen, [given[s.variable.name] for s in chosen])
    merged.slots = list(by_name.values())
    return merged


def _stored_values(metric: Metric, values: dict[str, Any]) -> dict[str, Any]:
    """Merge values by stored variable: the names of one compute group (a collection's
    members that keep the same state) must all be given, with equal values, since the store
    keeps one copy; one of them stands for the group."""
    out = {name: raw for name, raw in values.items()}
    for stored, names in metric.variable_aliases().items():
        present = [n for n in names if n in values]
        if not present:
            continue
        if len(present) < len(names):
            raise InvalidInput(
                f"variables {names} hold one state (a compute group: the members compute it "
                f"the same way), so a merge gives all of them with equal values or none; got "
                f"only {present}")
        arrays = [np.asarray(values[n], dtype=np.float64) for n in names]
        if any(a.shape != arrays[0].shape or not np.array_equal(a, arrays[0], equal_nan=True)
               for a in arrays[1:]):
            raise InvalidInput(
                f"variables {names} hold one state (a compute group: the members compute it "
                "the same way), so a merge must give them equal values; got different ones")
        for name in names:
            del out[name]
        out[stored] = values[present[0]]
    return out


def load_state(metric: Metric, state: State | Mapping[str, float],
               layout: dict[str, Any] | None = None) -> None:
    """Set the metric's variables from a stored state (missing elements are initial values)."""
    prepare(metric, layout)
    if not isinstance(state, State):
        state = state_from_named(metric, state)
    for slot in slots(metric):
        variable = slot.variable
        size = int(variable.initial_value.size)
        if variable.aggregation == "sum":
            array = _window(state.sums, slot.offset, size).reshape(variable.shape)
            if variable.cumulative:
                array = from_differences(array)
            variable.value = np.asarray(array + variable.initial_value)
            continue
        initial = variable.initial_value.astype(np.float64).ravel()
        stored = _window(state.extremes, slot.offset, size)
        present = _window(state.present, slot.offset, size).astype(bool)
        combine = np.fmax if variable.aggregation == "max" else np.fmin
        merged = np.where(present, combine(initial, stored), initial)
        nan = present & np.isnan(stored)
        merged[nan] = np.nan  # a NaN that was maxed/minned in poisons, as in the stores
        variable.value = merged.reshape(variable.shape)


def _window(array: np.ndarray, offset: int, size: int) -> np.ndarray:
    """array[offset:offset+size], zero-padded where the stored string is shorter."""
    part = np.asarray(array[offset:offset + size], dtype=np.float64)
    if part.size < size:
        part = np.concatenate((part, np.zeros(size - part.size)))
    return part


def to_json(value: Any) -> Any:
    """A result or variable value as JSON: a number or nested lists; NaN becomes null. A
    collection's result is a dict of its members' results."""
    if isinstance(value, dict):
        return {key: to_json(member) for key, member in value.items()}
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        number = float(array)
        return number if np.isfinite(number) else None
    if np.isfinite(array).all():
        return array.tolist()  # in C: a 4M-element state in ~0.1 s, not seconds
    return [to_json(x) for x in array] if array.ndim > 1 else [
        float(x) if np.isfinite(x) else None for x in array.tolist()
    ]


def result_json(metric: Metric, state: State | Mapping[str, float],
                layout: dict[str, Any] | None = None) -> Any:
    """The JSON result; null for a lazy metric before its first update (Keras raises)."""
    load_state(metric, state, layout)
    with np.errstate(all="ignore"):
        return to_json(metric.result() if metric.built else metric.unbuilt_result())


def stacked_results(metric: Metric, states: Sequence[State],
                    layout: dict[str, Any] | None = None) -> list[Any] | None:
    """Each state's JSON result, as `result_json` gives it, from ONE `result()` over variables
    stacked along a new first axis (a row per state): a listing's thousand sessions of one
    metric in a few numpy calls, not a thousand loads and results. None where that would not
    be exact: a metric that does not declare it (`Metric.results_stack`), a lazy one before
    its first batch, or state kept in max/min variables or as differences."""
    prepare(metric, layout)
    slot_list = slots(metric)
    if not metric.results_stack() or not metric.built or any(
            s.variable.aggregation != "sum" or s.variable.cumulative for s in slot_list):
        return None
    width = sum(int(s.variable.initial_value.size) for s in slot_list)
    if all(state.sums.size == width for state in states):
        # One concatenation, not np.stack (which expands each row in Python: 0.47 against
        # 0.09 ms for a thousand rows).
        sums = np.concatenate([state.sums for state in states]).reshape(len(states), width)
    else:  # shorter stored strings are zeros at the end, as `_window` reads them
        sums = np.zeros((len(states), width))
        for row, state in zip(sums, states, strict=True):
            part = state.sums[:width]
            row[:part.size] = part
    try:
        for slot in slot_list:
            variable, size = slot.variable, int(slot.variable.initial_value.size)
            rows = sums[:, slot.offset:slot.offset + size]
            variable.value = rows.reshape((len(states), *variable.shape)) \
                + variable.initial_value
        with np.errstate(all="ignore"):
            result = np.asarray(metric.result(), dtype=np.float64)
    finally:  # the metric goes back to its pool: no stacked value may stay behind
        for slot in slot_list:
            slot.variable.value = slot.variable.initial_value.copy()
    if result.ndim == 0 or result.shape[0] != len(states):
        return None
    return list(to_json(result))


def variables_json(metric: Metric, state: State | Mapping[str, float],
                   layout: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    load_state(metric, state, layout)
    return [
        {"name": v.name, "shape": list(v.shape), "dtype": v.dtype, "value": to_json(v.value)}
        for v in metric.variables
    ]


def describe_variables(metric: Metric, layout: dict[str, Any] | None = None
                       ) -> list[dict[str, Any]]:
    prepare(metric, layout)
    return [{"name": v.name, "shape": list(v.shape), "dtype": v.dtype} for v in metric.variables]
