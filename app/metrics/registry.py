"""One map from every name a user may give (class name, snake_case name, Keras alias) to a
metric class, and the one place where a metric is built from a session's config.

Built-ins come from the family modules (each exports `METRICS`); plugins add classes and
stateless functions (see plugins.py). Per-sample functions are registered by name too, for
`MeanMetricWrapper(fn=...)`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.errors import ConfigError, NotFound
from app.metrics.base import Metric, to_snake_case
from app.metrics.wrappers import function_metric, function_name

#: The built-in families, one module each, as Keras groups them. Each exports `METRICS`.
FAMILIES = (
    "reduction", "accuracy", "confusion", "curves", "regression", "probabilistic", "hinge",
    "fscore", "iou", "correlation", "wrappers",
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

#: The per-sample functions `keras.metrics` exports that Tally implements (found by name in
#: the family modules), usable as `MeanMetricWrapper`'s `fn`.
KERAS_FUNCTIONS = (
    "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
    "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
    "kl_divergence", "poisson", "hinge", "squared_hinge", "categorical_hinge",
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "log_cosh", "pearson_correlation",
    "concordance_correlation",
)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    cls: type[Metric]
    aliases: tuple[str, ...]
    builtin: bool = True

    @property
    def inputs(self) -> list[str]:
        return list(self.cls.inputs)

    def signature(self) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(self.cls.__init__).parameters)

    def parameters(self) -> dict[str, inspect.Parameter]:
        return {k: p for k, p in self.signature().items()
                if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def takes_any_keyword(self) -> bool:
        return any(p.kind == p.VAR_KEYWORD for p in self.signature().values())

    def required(self) -> list[str]:
        return [k for k, p in self.parameters().items() if p.default is p.empty]


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, MetricSpec] = {}
        self._names: dict[str, str] = {}
        self.functions: dict[str, Callable[..., Any]] = {}

    def register(self, cls: type[Metric], aliases: tuple[str, ...] = (), *,
                 builtin: bool = True) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Metric)):
            raise ConfigError(f"{cls!r} is not a subclass of app.metrics.Metric")
        name = cls.__name__
        names = (name, to_snake_case(name), *aliases)
        taken = [n for n in names if n in self._names]
        if taken:
            raise ConfigError(f"cannot register metric {name}: the name(s) {taken} are taken "
                              f"by {sorted({self._names[n] for n in taken})}")
        self._specs[name] = MetricSpec(name, cls, tuple(dict.fromkeys(names[1:])), builtin)
        for n in names:
            self._names[n] = name

    def register_function(self, fn: Callable[..., Any], name: str | None = None, *,
                          as_metric: bool = True) -> None:
        """A per-sample function: usable as `MeanMetricWrapper`'s `fn`, and (as_metric) a
        catalogue entry of its own under its name."""
        name = name or fn.__name__
        if name in self.functions:
            raise ConfigError(f"cannot register function {name}: the name is taken")
        self.functions[name] = fn
        if as_metric:
            self.register(function_metric(fn, name), builtin=False)

    def resolve(self, name: str) -> MetricSpec:
        canonical = self._names.get(name)
        if canonical is None:
            raise NotFound(f"unknown metric class {name!r}; {self._did_you_mean(name)}"
                           f"GET /v1/metrics lists the {len(self._specs)} available classes "
                           "and their aliases")
        return self._specs[canonical]

    def suggestions(self, name: str, n: int = 3) -> list[str]:
        """The registered names (class names, snake_case names, aliases) closest to `name`,
        closest first. Compared without case, so `precison` and `PRECISON` find `Precision`;
        each suggestion is spelt as registered, and one class is suggested once."""
        by_folded: dict[str, str] = {}
        for registered in sorted(self._names, key=lambda n: (n != self._names[n], n)):
            by_folded.setdefault(registered.casefold(), registered)
        close = difflib.get_close_matches(name.casefold(), list(by_folded), n=3 * n, cutoff=0.6)
        chosen: dict[str, str] = {}
        for folded in close:
            registered = by_folded[folded]
            chosen.setdefault(self._names[registered], registered)
        return list(chosen.values())[:n]

    def _did_you_mean(self, name: str) -> str:
        close = self.suggestions(name)
        if not close:
            return ""
        others = f" (or {', '.join(repr(c) for c in close[1:])})" if close[1:] else ""
        return f"did you mean {close[0]!r}{others}? "

    def specs(self) -> list[MetricSpec]:
        return [self._specs[k] for k in sorted(self._specs)]

    def _resolve_fn(self, config: dict[str, Any]) -> dict[str, Any]:
        """`MeanMetricWrapper`'s `fn`: a registered function's name -> the function."""
        if "fn" not in config:
            return config
        name = function_name(config["fn"])
        if name not in self.functions:
            raise ConfigError(f"fn must name a registered metric function, one of "
                              f"{sorted(self.functions)}; got {config['fn']!r}")
        return {**config, "fn": self.functions[name]}

    def build(self, name: str, config: dict[str, Any] | None) -> tuple[MetricSpec, Metric]:
        """Construct a metric from a session's config, validating every key and value."""
        spec = self.resolve(name)
        config = dict(config or {})
        accepted = spec.parameters()
        unknown = sorted(set(config) - set(accepted))
        if unknown and not spec.takes_any_keyword():
            raise ConfigError(f"unknown config key(s) {unknown} for {spec.name}; "
                              f"accepted keys: {sorted(accepted)}")
        missing = [k for k in spec.required() if k not in config]
        if missing:
            raise ConfigError(f"{spec.name} needs config key(s) {missing}")
        if spec.takes_any_keyword():
            config = self._resolve_fn(config)
        try:
            metric = spec.cls(**config)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid config for {spec.name}: {exc}") from None
        return spec, metric


def builtin_registry() -> Registry:
    registry = Registry()
    for family in FAMILIES:
        module = importlib.import_module(f"app.metrics.{family}")
        for cls in module.METRICS:
            registry.register(cls, KERAS_ALIASES.get(cls.__name__, ()))
        for fn_name in KERAS_FUNCTIONS:
            fn = getattr(module, fn_name, None)
            if callable(fn) and fn_name not in registry.functions:
                registry.register_function(fn, fn_name, as_metric=False)
    return registry


REGISTRY = builtin_registry()
