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


def register_object(registry: Registry, obj: Any, origin: str) -> None:
    """Register a module's metrics, a `Metric` subclass, or a per-sample function."""
    if inspect.ismodule(obj):
        for cls in _metric_classes(obj):
            check_class(cls, origin)
            registry.register(cls, builtin=False)
        for name, fn in _stateless(obj).items():
            registry.register_function(fn, name)
    elif inspect.isclass(obj) and issubclass(obj, Metric):
        check_class(obj, origin)
        registry.register(obj, builtin=False)
    elif callable(obj):
        registry.register_function(obj)
    else:
        raise ConfigError(f"plugin {origin}: {obj!r} is not a module, Metric subclass or "
                          "function")


def load_plugins(registry: Registry, modules: Iterable[str] = (), *,
                 entry_points: bool = True) -> list[str]:
    """Load every plugin into `registry`; returns where each came from. A plugin that fails
    to import or to register stops the start-up with a `ConfigError` that names it."""
    loaded = []
    sources: list[tuple[str, Any]] = []
    if entry_points:
        sources += [(f"entry point {ep.name} ({ep.value})", ep.load)
                    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    sources += [(f"module {name}", lambda name=name: importlib.import_module(name))
                for name in modules]
    for origin, load in sources:
        try:
            obj = load()
        except Exception as exc:  # noqa: BLE001 - any import error of a plugin is fatal
            raise ConfigError(f"plugin {origin} failed to load: {type(exc).__name__}: {exc}")\
                from exc
        register_object(registry, obj, origin)
        loaded.append(origin)
        log.info("loaded metric plugin %s", origin)
    return loaded
