"""Stand-ins for `keras.metrics` classes that run every call through Tally's HTTP API.

Each proxy class carries the name of the Keras class it replaces. Constructing one creates a
session (`PUT /v1/sessions/{unique name}`) with the constructor arguments as its config;
`update_state`, `result`, `variables`, `reset_state` and `get_config` are the matching
requests. Nothing of Keras' own implementation is used: attributes the tests read come from
the session's config (`thresholds`, `num_thresholds`, ...) or its variables
(`true_positives`, ...), i.e. from what the service answers.

The app runs in-process (`create_app(store=MemoryStore())` behind Starlette's TestClient),
started once per process by `start()`.
"""

from __future__ import annotations

import inspect
import io
import itertools
from typing import Any, ClassVar

import numpy as np
from fastapi.testclient import TestClient
from keras.src.backend.common.symbolic_scope import in_symbolic_scope
from keras.src.saving.keras_saveable import KerasSaveable

from app.api.app import create_app
from app.settings import Settings
from app.store.memory import MemoryStore

_client: TestClient | None = None
_names = itertools.count()
#: Requests sent since the last `take_request_count()`: a test that passed without any
#: did not exercise Tally (it only used Keras itself).
_requests = 0


def start() -> None:
    global _client
    if _client is None:
        _client = TestClient(create_app(Settings(), store=MemoryStore()))
        _client.__enter__()


def stop() -> None:
    global _client
    if _client is not None:
        _client.__exit__(None, None, None)
        _client = None


def take_request_count() -> int:
    global _requests
    count, _requests = _requests, 0
    return count


class ServiceError(ValueError):
    """A 4xx answer, raised as the ValueError Keras raises for bad arguments and inputs."""


class ServiceTypeError(TypeError):
    """A 4xx answer about an unknown constructor argument (Keras raises TypeError there)."""


class SymbolicCall(NotImplementedError):
    """Keras traces the metric with placeholder tensors (`compute_output_spec`): their values
    are uninitialised memory, which a service must not count as data."""


def _call(method: str, path: str, **kwargs: Any) -> Any:
    global _requests
    assert _client is not None, "proxy.start() was not called"
    _requests += 1
    response = _client.request(method, path, **kwargs)
    if response.status_code >= 400:
        detail = response.json().get("detail", response.text)
        if response.status_code >= 500:
            raise RuntimeError(f"Tally answered {response.status_code}: {detail}")
        if "unknown config key" in detail:
            raise ServiceTypeError(detail)
        raise ServiceError(detail)
    return response.json() if response.content else None


# -- encoding ----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """A constructor argument as JSON: arrays and tuples as lists, dtype policies by name,
    metric functions by name (a service cannot run a client's Python code)."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if hasattr(value, "name") and type(value).__name__.endswith("DTypePolicy"):
        return value.name
    if callable(value):
        return _function_name(value)
    return value


def _function_name(fn: Any) -> str:
    """A metric function by name. A function Tally does not know that the test itself defines
    (not one of Keras') is installed on the server as a plugin function first, as a
    deployment would install it with TALLY_PLUGINS; Keras' own functions are never run by the
    server, which uses its own implementation of the same name (or refuses an unknown one)."""
    name: str = getattr(fn, "__name__", repr(fn))
    registry = _client.app.state.sessions.registry if _client is not None else None
    module = getattr(fn, "__module__", "") or ""
    own = module.split(".")[0] == "keras" and not module.endswith("_test")
    if registry is not None and not own and name not in registry.functions:
        registry.register_function(fn, name, as_metric=False)
    return name


def _npz(arrays: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def _decode(value: Any, dtype: str) -> np.ndarray:
    """A JSON result or variable value as an array (null is NaN)."""
    array = np.asarray(np.nan if value is None else value, dtype=object)
    array = np.where(np.equal(array, None), np.nan, array) if array.ndim else array
    return np.asarray(array, dtype=np.float64).astype(dtype)


class ProxyVariable:
    """A variable as `GET .../variables` reports it: enough of `keras.Variable` for tests
    and `keras.ops` (name, path, shape, dtype, value, numpy(), array protocol)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.name = doc["name"]
        self.path = doc["name"]
        self.shape = tuple(doc["shape"])
        self.dtype = doc["dtype"]
        self.value = _decode(doc["value"], doc["dtype"]).reshape(self.shape)
        self.ndim = len(self.shape)

    def numpy(self) -> np.ndarray:
        return self.value

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.value if dtype is None else self.value.astype(dtype)

    def __repr__(self) -> str:
        return f"<ProxyVariable {self.name} shape={self.shape} dtype={self.dtype}>"


# -- the proxy class ---------------------------------------------------------------------------


def _restore(cls: type, state: dict[str, Any]) -> Any:
    """Unpickle a proxy: the same session, without creating it again."""
    instance = cls.__new__(cls)
    instance.__dict__.update(state)
    return instance


class TallyMetric(KerasSaveable):
    """A `keras.metrics` class served by Tally (subclassed once per Keras class).

    It is a `KerasSaveable` only so that Keras' deserialisation accepts the class; it pickles
    as a reference to its session, not through Keras' saving library."""

    keras_class: ClassVar[type]
    tally_class: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        signature = inspect.signature(self.keras_class.__init__)
        try:
            bound = signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise ServiceTypeError(str(exc)) from None
        config = self._arguments(signature, bound)
        bound.apply_defaults()
        #: The constructor's arguments, Keras' defaults filled in: what a Keras object keeps
        #: as attributes even where its get_config leaves them out (`from_sorted_ids`).
        self._arguments_with_defaults = self._arguments(signature, bound)
        self._session = f"keras-suite.{next(_names)}"
        doc = _call("PUT", f"/v1/sessions/{self._session}",
                    json={"metric": self.tally_class, "config": _jsonable(config)})
        self._config: dict[str, Any] = doc["config"]

    @staticmethod
    def _arguments(signature: inspect.Signature, bound: inspect.BoundArguments
                   ) -> dict[str, Any]:
        """The bound arguments as one flat dict (**kwargs spread), without `self`."""
        arguments: dict[str, Any] = {}
        for key, value in list(bound.arguments.items())[1:]:
            kind = signature.parameters[key].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                arguments[key] = value
        return arguments

    # -- what Keras' tests read --------------------------------------------------------
    @property
    def name(self) -> str:
        return self._config.get("name") or self._session

    @property
    def dtype(self) -> str:
        return self._config.get("dtype") or "float32"

    @property
    def _dtype(self) -> str:
        return self.dtype

    @property
    def variables(self) -> list[ProxyVariable]:
        doc = _call("GET", f"/v1/sessions/{self._session}/variables")
        return [ProxyVariable(v) for v in doc["variables"]]

    @property
    def weights(self) -> list[ProxyVariable]:
        return self.variables

    def __getattr__(self, key: str) -> Any:
        """Constructor arguments from the session's config (else as given to the
        constructor), variables by name (`true_positives`)."""
        if key.startswith("__") or key in ("_config", "_session", "_arguments_with_defaults"):
            raise AttributeError(key)
        if key in self._config:
            return self._config[key]
        if key in self._arguments_with_defaults:
            return self._arguments_with_defaults[key]
        for variable in self.variables:
            if variable.name == key:
                return variable
        raise AttributeError(f"{type(self).__name__} (a Tally session) has no attribute "
                             f"{key!r}: neither a constructor argument nor a variable")

    # -- the Keras API -----------------------------------------------------------------
    def update_state(self, *args: Any, **kwargs: Any) -> None:
        if in_symbolic_scope():
            raise SymbolicCall(f"{self.tally_class} is served by Tally: it cannot be traced "
                               "symbolically (compute_output_spec)")
        sample_weight = kwargs.pop("sample_weight", None)
        arrays = dict(zip(self.inputs, args, strict=False))
        arrays.update(kwargs)
        if len(args) > len(self.inputs):
            sample_weight = args[len(self.inputs)]
        if sample_weight is not None:
            arrays["sample_weight"] = sample_weight
        _call("POST", f"/v1/sessions/{self._session}/update", content=_npz(arrays),
              headers={"Content-Type": "application/x-npz"})

    def result(self) -> np.ndarray:
        doc = _call("GET", f"/v1/sessions/{self._session}/result")
        return _decode(doc["result"], self._result_dtype())

    def _result_dtype(self) -> str:
        dtype = self.dtype
        return dtype if dtype in ("float16", "float32", "float64") else "float32"

    def reset_state(self) -> None:
        _call("POST", f"/v1/sessions/{self._session}/reset")

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = _call("GET", f"/v1/sessions/{self._session}/config")
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TallyMetric:
        return cls(**config)

    def __call__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        self.update_state(*args, **kwargs)
        return self.result()

    def __repr__(self) -> str:
        return f"<Tally {self.tally_class} session {self._session}>"

    def _obj_type(self) -> str:
        return "Metric"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), dict(self.__dict__)))


def proxy_class(keras_class: type, tally_class: str, inputs: list[str]) -> type[TallyMetric]:
    """The stand-in for `keras_class`. It takes the Keras class's module and qualified name, so
    that whatever finds a class by them (pickle, Keras' deserialisation) finds the stand-in
    once the module attribute is replaced."""
    return type(keras_class.__name__, (TallyMetric,), {
        "keras_class": keras_class, "tally_class": tally_class, "inputs": tuple(inputs),
        "__module__": keras_class.__module__, "__qualname__": keras_class.__qualname__,
        "__doc__": f"{keras_class.__name__}, served by Tally.",
    })
