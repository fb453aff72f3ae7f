"""The `Metric` base class: a numpy mirror of `keras.metrics.Metric`.

A metric declares its state in `__init__` with `add_variable` (each variable with an
aggregation: how two workers' contributions combine), mutates it in `update_state`, and reads
it in `result`. That is all a metric author writes, exactly as in the Keras guide.

The service never keeps a metric's state in the object. `engine.py` turns a metric into two
pure functions: run `update_state` on freshly initialised variables to capture one batch's
contribution, and load stored state into the variables to call `result`.
"""

from __future__ import annotations

import copy
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from app.errors import ConfigError, InvalidInput

Aggregation = Literal["sum", "max", "min"]
AGGREGATIONS: tuple[str, ...] = ("sum", "max", "min")
FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int32", "int64")


def to_snake_case(name: str) -> str:
    """`MeanIoU` -> `mean_io_u`, exactly as Keras names its metrics."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def ranks_at_least(inputs: Mapping[str, np.ndarray], rank: int) -> bool:
    """Every input has at least `rank` axes (for `Metric.merges_along_batch`: a metric that
    reduces the last axis keeps the batch axis only when there is another one)."""
    return all(array.ndim >= rank for array in inputs.values())


def _initial_array(initializer: Any, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if isinstance(initializer, str):
        key = initializer.lower()
        if key == "zeros":
            return np.zeros(shape, dtype=dtype)
        if key == "ones":
            return np.ones(shape, dtype=dtype)
        raise ConfigError(f"unknown initializer {initializer!r}; expected 'zeros', 'ones', "
                          "a number or a callable(shape, dtype)")
    if isinstance(initializer, int | float | np.number):
        return np.full(shape, initializer, dtype=dtype)
    if callable(initializer):
        return np.broadcast_to(np.asarray(initializer(shape, dtype), dtype=dtype), shape).copy()
    raise ConfigError(f"unsupported initializer {initializer!r}")


class Variable:
    """One named state array, like `keras.Variable`: value, shape, dtype and aggregation.

    Arithmetic on a variable gives plain numpy arrays, so `v.assign(v + x)` and
    `v.assign_add(x)` both work as they do in Keras.
    """

    def __init__(self, name: str, shape: Sequence[int], dtype: str, initializer: Any,
                 aggregation: str) -> None:
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"variable {name!r}: aggregation must be one of "
                              f"{', '.join(AGGREGATIONS)}; got {aggregation!r}")
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.aggregation = aggregation
        self.initial_value = _initial_array(initializer, self.shape, dtype)
        self.value = self.initial_value.copy()
        #: A reverse cumulative sum along axis 0 (AUC's per-threshold counts): the stores keep
        #: its per-bucket differences, so a batch writes only the buckets it touched.
        self.cumulative = False
        #: What determines this variable's per-batch value (None: nothing declared). Two
        #: variables with equal keys, shapes and dtypes hold equal values after any batches, so
        #: a metric collection stores them once (a compute group, see `collection.py`).
        self.share_key: str | None = None

    def assign(self, value: Any) -> None:
        array = np.asarray(value)
        if array.shape != self.shape:
            array = np.broadcast_to(array, self.shape)
        self.value = array.astype(self.dtype, copy=True)

    def assign_add(self, delta: Any) -> None:
        self.assign(self.value + np.asarray(delta, dtype=self.dtype))

    def assign_sub(self, delta: Any) -> None:
        self.assign(self.value - np.asarray(delta, dtype=self.dtype))

    def reset(self) -> None:
        self.value = self.initial_value.copy()

    def numpy(self) -> np.ndarray:
        return self.value

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        value = np.asarray(self.value)
        return value if dtype is None else value.astype(dtype)

    def __repr__(self) -> str:
        return f"<Variable {self.name} shape={self.shape} dtype={self.dtype}>"

    # Arithmetic delegates to the value, so update code reads like Keras code.
    def __add__(self, o: Any) -> Any: return self.value + np.asarray(o)
    def __radd__(self, o: Any) -> Any: return np.asarray(o) + self.value
    def __sub__(self, o: Any) -> Any: return self.value - np.asarray(o)
    def __rsub__(self, o: Any) -> Any: return np.asarray(o) - self.value
    def __mul__(self, o: Any) -> Any: return self.value * np.asarray(o)
    def __rmul__(self, o: Any) -> Any: return np.asarray(o) * self.value
    def __truediv__(self, o: Any) -> Any: return self.value / np.asarray(o)
    def __rtruediv__(self, o: Any) -> Any: return np.asarray(o) / self.value
    def __neg__(self) -> Any: return -self.value
    def __getitem__(self, key: Any) -> Any: return self.value[key]
    def __float__(self) -> float: return float(self.value)


class Metric:
    """Base class of every metric, built-in or plugin. Mirrors `keras.metrics.Metric`."""

    #: Names of the arrays `update_state` takes besides `sample_weight`; derived from the
    #: signature when a subclass does not set it (a collection sets it per instance).
    inputs: tuple[str, ...]

    #: Keras builds some metrics' variables on the first update, with shapes taken from the
    #: batch (F1Score's classes, R2Score's columns). Such metrics set `lazy = True`, create
    #: those variables in `build_variables(**layout)` and call `self.ensure_built(...)` from
    #: `update_state`; the first batch's layout then fixes the session's shapes for good.
    #: An instance may set it when only some configs are lazy (AUC multi-label, no num_labels).
    lazy: bool = False

    def __init__(self, name: str | None = None, dtype: str | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise ConfigError(f"name must be a string or null; got {name!r}")
        # As in Keras, None and "" both mean the class name in snake_case.
        self.name = name or to_snake_case(type(self).__name__)
        self.dtype = validate_dtype(dtype, FLOAT_DTYPES + INT_DTYPES)
        self._variables: list[Variable] = []
        self._layout: dict[str, Any] | None = None
        self._eager_count: int | None = None  # variables made in __init__, before any build
        #: The most state elements this metric may hold (None: no limit). The service sets it
        #: from its configured state limit; a first batch whose layout would build more is
        #: refused before anything is allocated (see `ensure_built`).
        self.max_state_elements: int | None = None
        #: What `max_state_elements` is, for messages (a collection's member gets what the
        #: other members leave of the session's limit).
        self.state_limit_scope = "per session (TALLY_MAX_STATE_ELEMENTS)"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "inputs" not in cls.__dict__:
            params = inspect.signature(cls.update_state).parameters
            cls.inputs = tuple(
                p for p, spec in params.items()
                if p not in ("self", "sample_weight")
                and spec.kind in (spec.POSITIONAL_ONLY, spec.POSITIONAL_OR_KEYWORD)
            )

    # -- state declaration -------------------------------------------------------------
    def add_variable(self, shape: Sequence[int] = (), initializer: Any = "zeros",
                     dtype: str | None = None, aggregation: str = "sum",
                     name: str | None = None) -> Variable:
        name = name or f"variable_{len(self._variables)}"
        if any(v.name == name for v in self._variables):
            raise ConfigError(f"metric {type(self).__name__} declares variable {name!r} twice")
        variable = Variable(name, shape, dtype or self.dtype, initializer, aggregation)
        self._variables.append(variable)
        return variable

    def add_weight(self, name: str | None = None, shape: Sequence[int] = (),
                   initializer: Any = "zeros", dtype: str | None = None,
                   aggregation: str = "sum") -> Variable:
        """Keras' older spelling of `add_variable`, used by the Keras guide's examples."""
        return self.add_variable(shape, initializer, dtype, aggregation, name)

    @property
    def variables(self) -> list[Variable]:
        return list(self._variables)

    @property
    def stored_variables(self) -> list[Variable]:
        """The variables the store keeps, in storage order: all of `variables`, except in a
        collection whose members share state (one variable per compute group)."""
        return self.variables

    def variable_aliases(self) -> dict[str, list[str]]:
        """Stored variable name -> the names of `variables` that hold its value, for the
        stored variables that more than one name shows (a collection's compute groups)."""
        return {}

    # -- lazily shaped state -----------------------------------------------------------
    @property
    def layout(self) -> dict[str, Any] | None:
        """What fixed the lazily built variables' shapes (None: not built, or not lazy)."""
        return self._layout

    @property
    def built(self) -> bool:
        return not self.lazy or self._layout is not None

    def build_variables(self, **layout: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} is lazy but has no build_variables")

    def build(self, layout: dict[str, Any]) -> None:
        """(Re)create the lazy variables for `layout`, after the ones made in `__init__`."""
        self.unbuild()
        self._layout = dict(layout)
        self.build_variables(**layout)

    def unbuild(self) -> None:
        if self._eager_count is None:
            self._eager_count = len(self._variables)
        del self._variables[self._eager_count:]
        self._layout = None

    def ensure_built(self, **layout: Any) -> None:
        """Build on the first batch; refuse a later batch whose shapes imply another layout,
        and a first batch whose layout would exceed `max_state_elements`."""
        if self._layout is None:
            check_state_size(self, self.layout_elements(layout), InvalidInput,
                             f"with the layout {layout} of this first batch")
            self.build(layout)
        elif layout != self._layout:
            raise InvalidInput(
                f"{type(self).__name__}'s variables were built for {self._layout} by the "
                f"session's first batch; this batch implies {layout}")

    # -- state size, known before any batch ---------------------------------------------
    def state_elements(self) -> int | None:
        """How many numbers the state holds (the sum of the variables' sizes); None for a lazy
        metric before its first batch fixed the shapes (see `layout_elements`)."""
        if not self.built:
            return None
        return sum(math.prod(v.shape) for v in self._variables)

    def limit_state(self, max_elements: int | None) -> None:
        """Set `max_state_elements` and check the config against it: a config whose state
        would be larger is a ConfigError (422); a lazy metric is checked again, from its
        layout, when its first batch arrives."""
        self.max_state_elements = max_elements
        check_state_size(self, self.state_elements(), ConfigError, "with this config")

    def eager_elements(self) -> int:
        """The elements of the variables made in `__init__` (all of them if not lazy)."""
        count = len(self._variables) if self._eager_count is None else self._eager_count
        return sum(math.prod(v.shape) for v in self._variables[:count])

    def layout_elements(self, layout: dict[str, Any]) -> int:
        """The elements the state would hold once built for `layout`, without building it."""
        return self.eager_elements() + self.lazy_elements(**layout)

    def lazy_elements(self, **layout: Any) -> int:
        """The elements `build_variables(**layout)` would add. Built-in lazy metrics compute it
        from the layout; this fallback (for plugins) builds a throwaway copy."""
        probe = copy.copy(self)
        probe._variables = list(self._variables)
        probe._eager_count = self._eager_count
        probe.build(layout)
        return sum(math.prod(v.shape) for v in probe._variables) - self.eager_elements()

    # -- the Keras API -----------------------------------------------------------------
    def update_state(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def result(self) -> Any:
        raise NotImplementedError

    def merges_along_batch(self, inputs: Mapping[str, np.ndarray]) -> bool:
        """Whether `update_state` on batches of these shapes concatenated along axis 0 adds
        exactly what separate updates add (every sample counts on its own; nothing reduces
        the batch axis). The service then computes concurrent small updates of a session as
        one (`app/merging.py`). False unless a metric family declares it, for the input
        ranks where it holds: Keras' `MeanSquaredError` of 1-D input, for one, is the mean
        of a whole batch counted as one sample. tests/test_merging.py checks every
        declaration against separate updates."""
        return False

    def results_stack(self) -> bool:
        """Whether `result()` over variables that carry an extra leading axis (one row per
        state) gives each state's result in its row: elementwise math on the variables, as
        Mean's `total / count`, nothing that reduces or indexes their own axes. A listing
        then computes the results of many sessions of this metric in one call
        (`engine.stacked_results`). False unless a metric family declares it;
        tests/test_stacked_results.py checks every declaration against results one by
        one."""
        return False

    def unbuilt_result(self) -> Any:
        """The result of a lazy metric before its first batch fixed its layout: None (Keras
        raises); a collection answers its other members' results beside it."""
        return None

    def reset_state(self) -> None:
        for variable in self._variables:
            variable.reset()

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Metric:
        return cls(**config)


def check_state_size(metric: Metric, elements: int | None, error: type[Exception],
                     when: str) -> None:
    """Refuse a state of more than `metric.max_state_elements` numbers (a 422: ConfigError
    for a config, InvalidInput for a first batch)."""
    limit = metric.max_state_elements
    if limit is not None and elements is not None and elements > limit:
        raise error(f"{type(metric).__name__} would keep {elements:,} state elements {when}; "
                    f"the limit is {limit:,} {metric.state_limit_scope}")


def validate_dtype(dtype: Any, allowed: Sequence[str]) -> str:
    """Keras' `dtype` argument: None means float32 (floatx)."""
    if dtype is None:
        return "float32" if "float32" in allowed else allowed[0]
    if not isinstance(dtype, str) or dtype not in allowed:
        raise ConfigError(f"dtype must be one of {', '.join(allowed)} or null; got {dtype!r}")
    return dtype


MetricFactory = Callable[..., Metric]
