"""One map from every name a user may give (class name, snake_case name, Keras alias) to a
metric class, and the one place where a metric is built from a session's config."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from app.errors import ConfigError, NotFound
from app.metrics.base import Metric, to_snake_case

#: The built-in families, one module each, as Keras groups them. Each exports `METRICS`.
FAMILIES = (
    "reduction", "accuracy", "confusion", "regression", "probabilistic", "hinge",
)

#: The extra names Keras accepts for built-ins (`keras.metrics.get`, `compile(metrics=...)`).
#: `acc`/`accuracy`: in `compile` Keras picks binary/categorical/sparse accuracy from the
#: model's output shape; a session has no model, so both mean `Accuracy`, as in
#: `keras.metrics.get("accuracy")`.
KERAS_ALIASES = {
    "MeanSquaredError": ("mse", "MSE"),
    "MeanAbsoluteError": ("mae", "MAE"),
    "MeanAbsolutePercentageError": ("mape", "MAPE"),
    "MeanSquaredLogarithmicError": ("msle", "MSLE"),
    "BinaryCrossentropy": ("bce", "BCE"),
    "Accuracy": ("acc",),
}

#: Internal bases that are not metrics a session can host.
NOT_SESSION_METRICS = {"MeanMetricWrapper"}


@dataclass(frozen=True)
class MetricSpec:
    name: str
    cls: type[Metric]
    aliases: tuple[str, ...]

    @property
    def inputs(self) -> list[str]:
        return list(self.cls.inputs)

    def parameters(self) -> dict[str, inspect.Parameter]:
        params = inspect.signature(self.cls.__init__).parameters
        return {k: p for k, p in params.items()
                if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def required(self) -> list[str]:
        return [k for k, p in self.parameters().items() if p.default is p.empty]


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, MetricSpec] = {}
        self._names: dict[str, str] = {}

    def register(self, cls: type[Metric], aliases: tuple[str, ...] = (), *,
                 replace: bool = False) -> None:
        name = cls.__name__
        if name in self._specs and not replace:
            raise ValueError(f"metric {name} is already registered")
        names = (name, to_snake_case(name), *aliases)
        self._specs[name] = MetricSpec(name, cls, tuple(n for n in names[1:] if n != name))
        for n in names:
            self._names[n] = name

    def resolve(self, name: str) -> MetricSpec:
        canonical = self._names.get(name)
        if canonical is None:
            raise NotFound(f"unknown metric class {name!r}; GET /v1/metrics lists the "
                           f"{len(self._specs)} available classes and their aliases")
        return self._specs[canonical]

    def specs(self) -> list[MetricSpec]:
        return [self._specs[k] for k in sorted(self._specs)]

    def build(self, name: str, config: dict[str, Any] | None) -> tuple[MetricSpec, Metric]:
        """Construct a metric from a session's config, validating every key and value."""
        spec = self.resolve(name)
        config = dict(config or {})
        accepted = spec.parameters()
        unknown = sorted(set(config) - set(accepted))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown} for {spec.name}; "
                              f"accepted keys: {sorted(accepted)}")
        missing = [k for k in spec.required() if k not in config]
        if missing:
            raise ConfigError(f"{spec.name} needs config key(s) {missing}")
        try:
            metric = spec.cls(**config)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid config for {spec.name}: {exc}") from None
        return spec, metric


def _builtin_registry() -> Registry:
    registry = Registry()
    for family in FAMILIES:
        module = importlib.import_module(f"app.metrics.{family}")
        for cls in module.METRICS:
            if cls.__name__ not in NOT_SESSION_METRICS:
                registry.register(cls, KERAS_ALIASES.get(cls.__name__, ()))
    return registry


REGISTRY = _builtin_registry()
