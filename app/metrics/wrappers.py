"""Metrics made from per-sample functions, as Keras' `MeanMetricWrapper` makes them.

* `MeanMetricWrapper` in the catalogue: `{"metric": "MeanMetricWrapper", "config": {"fn":
  "binary_accuracy", "threshold": 0.3}}`, with `fn` the name of a registered function (the
  Keras metric functions Tally implements, or a plugin's).
* `function_metric(fn)`: a metric class for a plugin's stateless function, so that it appears
  in the catalogue under the function's name. Either way the result is the mean over every
  sample seen, never a mean of batch means.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from app.errors import ConfigError
from app.metrics import reduction
from app.metrics.base import Metric


def function_parameters(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword arguments of `fn(y_true, y_pred, **kwargs)`."""
    params = list(inspect.signature(fn).parameters.values())
    if len(params) < 2:
        raise ConfigError(f"metric function {fn.__name__} must take (y_true, y_pred, ...)")
    return {p.name: p for p in params[2:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _check_kwargs(fn: Callable[..., Any], name: str, kwargs: dict[str, Any]) -> None:
    accepted = function_parameters(fn)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} for function {name}; "
                          f"accepted: {sorted(accepted)}")


class MeanMetricWrapper(reduction.MeanMetricWrapper):
    """The catalogue's `MeanMetricWrapper`: `fn` arrives as a name (or Keras' serialised
    function) and is resolved by the registry before construction."""

    def __init__(self, fn: Any, name: str | None = None, dtype: str | None = None,
                 **kwargs: Any) -> None:
        if not callable(fn):
            raise ConfigError(f"fn must name a registered metric function; got {fn!r}")
        _check_kwargs(fn, fn.__name__, kwargs)
        super().__init__(fn, name=name, dtype=dtype, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "fn": self._fn.__name__,
                **self._fn_kwargs}


def function_name(fn: Any) -> str | None:
    """The function name in a config's `fn`: a string, or Keras' serialised form."""
    if isinstance(fn, str):
        return fn
    if isinstance(fn, dict) and isinstance(fn.get("config"), str):
        return str(fn["config"])
    return None


def function_metric(fn: Callable[..., Any], name: str | None = None) -> type[Metric]:
    """A metric class wrapping `fn`, whose config keys are `fn`'s keyword arguments."""
    metric_name = name or fn.__name__
    params = function_parameters(fn)

    def __init__(self: reduction.MeanMetricWrapper, name: str | None = None,
                 dtype: str | None = None, **kwargs: Any) -> None:
        _check_kwargs(fn, metric_name, kwargs)
        defaults = {k: p.default for k, p in params.items() if p.default is not p.empty}
        reduction.MeanMetricWrapper.__init__(self, fn, name=name or metric_name, dtype=dtype,
                                             **{**defaults, **kwargs})

    signature = inspect.Signature([
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY, default=None),
        *[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params.values()],
    ])
    __init__.__signature__ = signature  # type: ignore[attr-defined]
    return type(metric_name, (reduction.MeanMetricWrapper,), {
        "__init__": __init__, "__doc__": fn.__doc__, "__module__": fn.__module__,
        "inputs": ("y_true", "y_pred"),
    })


METRICS = [MeanMetricWrapper]
