"""Custom metrics from plugins: Python modules that define `Metric` subclasses the way the
Keras guide teaches (numpy in place of tf), and optionally stateless per-sample functions.

Where plugins come from:
* the entry-point group `tally.metrics` of installed packages (each entry names a module, a
  `Metric` subclass or a function);
* the `TALLY_PLUGINS` setting: module names, comma-separated.

What a module contributes: every `Metric` subclass it defines (not ones it imports), and the
functions listed in its `STATELESS_METRICS` (a list, or a dict of name -> function).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from app.errors import ConfigError
from app.metrics.base import Metric
from app.metrics.registry import Registry

ENTRY_POINT_GROUP = "tally.metrics"
log = logging.getLogger("tally")


def _metric_classes(module: ModuleType) -> list[type[Metric]]:
    return [obj for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, Metric) and obj is not Metric
            and obj.__module__ == module.__name__ and not obj.__name__.startswith("_")
            and not inspect.isabstract(obj)]


def _stateless(module: ModuleType) -> dict[str, Any]:
    declared = getattr(module, "STATELESS_METRICS", {})
    if isinstance(declared, dict):
        return dict(declared)
    return {fn.__name__: fn for fn in declared}


def check_class(cls: type[Metric], origin: str) -> None:
    """Refuse at registration what can be seen before any batch: no inputs, or variables with
    an aggregation Tally cannot serve (when the class can be built from defaults)."""
    if not cls.inputs:
        raise ConfigError(f"plugin {origin}: {cls.__name__}.update_state takes no inputs")
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.default is p.empty and p.name != "self"
           and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return  # needs arguments: checked when a session is created
    try:
        cls()
    except ConfigError as exc:
        raise ConfigError(f"plugin {origin}: {cls.__name__}: {exc.detail}") from None
    except Exception as exc:  # noqa: BLE001 - a plugin's constructor may fail any way
        raise ConfigError(f"plugin {origin}: {cls.__name__}() failed: "
                          f"{type(exc).__name__}: {exc}") from None


def _is_registered(registry: Registry, cls: type[Metric]) -> bool:
    return any(spec.cls is cls for spec in registry.specs())


def register_object(registry: Registry, obj: Any, origin: str) -> list[str]:
    """Register a module's metrics, a `Metric` subclass, or a per-sample function; returns
    the names registered. A class or function already registered (the same object, reached
    through another entry point or `TALLY_PLUGINS`) is skipped, not refused."""
    if inspect.ismodule(obj):
        names = []
        for cls in _metric_classes(obj):
            names += _register_class(registry, cls, origin)
        for name, fn in _stateless(obj).items():
            names += _register_function(registry, fn, name)
        return names
    if inspect.isclass(obj) and issubclass(obj, Metric):
        return _register_class(registry, obj, origin)
    if callable(obj):
        return _register_function(registry, obj, obj.__name__)
    raise ConfigError(f"plugin {origin}: {obj!r} is not a module, Metric subclass or "
                      "function")


def _register_class(registry: Registry, cls: type[Metric], origin: str) -> list[str]:
    if _is_registered(registry, cls):
        return []
    check_class(cls, origin)
    registry.register(cls, builtin=False)
    return [cls.__name__]


def _register_function(registry: Registry, fn: Any, name: str) -> list[str]:
    if registry.functions.get(name) is fn:
        return []
    registry.register_function(fn, name)
    return [name]


@dataclass
class _Plugin:
    """One loaded object (module, class or function) and every source that named it."""

    obj: Any
    target: str
    sources: list[str]
    metrics: list[str]

    def describe(self) -> str:
        metrics = ", ".join(self.metrics) or "no new metric"
        return f"{self.target} (from {', '.join(self.sources)}): {metrics}"


def _sources(modules: Iterable[str], entry_points: bool) -> list[tuple[str, str, Any]]:
    """(source, target, loader) for every entry point and every named module, in order."""
    found: list[tuple[str, str, Any]] = []
    if entry_points:
        found += [(f"entry point {ep.name}", ep.value, ep.load)
                  for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    found += [("TALLY_PLUGINS", name, lambda name=name: importlib.import_module(name))
              for name in dict.fromkeys(modules)]
    return found


def load_plugins(registry: Registry, modules: Iterable[str] = (), *,
                 entry_points: bool = True) -> list[str]:
    """Load every plugin into `registry`; returns one line per plugin: what it is, where it
    came from, the metrics it added. A module reached twice (an installed package's entry
    point that `TALLY_PLUGINS` also names) loads once. A plugin that fails to import or to
    register stops the start-up with a `ConfigError` that names it."""
    plugins: dict[int, _Plugin] = {}
    for source, target, load in _sources(modules, entry_points):
        origin = f"{source} ({target})"
        try:
            obj = load()
        except Exception as exc:  # noqa: BLE001 - any import error of a plugin is fatal
            raise ConfigError(f"plugin {origin} failed to load: {type(exc).__name__}: {exc}")\
                from exc
        if id(obj) in plugins:
            plugins[id(obj)].sources.append(source)
            continue
        metrics = register_object(registry, obj, origin)
        plugins[id(obj)] = _Plugin(obj, target, [source], metrics)
    return [plugin.describe() for plugin in plugins.values()]


def log_loaded(plugins: Iterable[str]) -> None:
    """Log each loaded plugin once, when the service starts (not when a pre-flight check or
    a test builds the app without serving it)."""
    for plugin in plugins:
        log.info("metric plugin %s", plugin)
