"""`RemoteMetric`: the Keras metric API (`update_state`, `result`, `variables`, `reset_state`,
`get_config`, `merge_state`) over the wire, on a session every worker shares.

    auc = keras.metrics.AUC(num_thresholds=200)                       # before
    auc = RemoteMetric("run42.val.auc", "AUC", {"num_thresholds": 200},
                       url="http://tally:8000")                       # after

Slices (one result per segment of the samples, as if a Keras metric were kept per segment):

    auc = RemoteMetric("run42.val.auc", "AUC", url=..., slices=1000)
    auc.update_state(y_true, y_pred, slices=countries)   # a value per sample
    auc.result()                  # over every sample
    auc.result(slice="fr")        # over the samples of "fr" only
    auc.slice_results()           # {"fr": ..., "de": ..., ...}
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tally_client._core import (
    SliceValue,
    as_array,
    new_idempotency_key,
    slice_array,
    slice_value,
)
from tally_client.background import BackgroundSender, ErrorCallback
from tally_client.client import DEFAULT_TIMEOUT, TallyClient
from tally_client.retry import RetryPolicy

log = logging.getLogger("tally_client")
PAIR_INPUTS = ("y_true", "y_pred")


@dataclass(frozen=True)
class RemoteVariable:
    """A session variable as Keras shows one: `.name`, `.shape`, `.dtype`, `.numpy()`."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    value: np.ndarray

    def numpy(self) -> np.ndarray:
        return self.value.copy()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.value.astype(dtype) if dtype is not None else self.value.copy()

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> RemoteVariable:
        shape = tuple(int(n) for n in document["shape"])
        dtype = str(document.get("dtype", "float32"))
        value = np.asarray(_nan_for_null(document["value"]), dtype=dtype).reshape(shape)
        return cls(str(document["name"]), shape, dtype, value)


def _nan_for_null(value: Any) -> Any:
    """JSON `null` is how the service writes a NaN result."""
    if value is None:
        return float("nan")
    if isinstance(value, list):
        return [_nan_for_null(v) for v in value]
    return value


def keras_result(value: Any) -> Any:
    """A result as Keras' `result()` gives it: a Python float for a scalar, a float32 numpy
    array for a tensor, a dict of those for a collection; NaN for `null`."""
    if isinstance(value, dict):
        return {k: keras_result(v) for k, v in value.items()}
    if isinstance(value, list):
        return np.asarray(_nan_for_null(value), dtype=np.float32)
    return float(_nan_for_null(value))


def _metric_spec(metric: Any, config: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """(class name, config) from a class name, or from a Keras metric instance (its class and
    `get_config()`), so `RemoteMetric(name, keras.metrics.AUC(...))` works too."""
    if isinstance(metric, str):
        return metric, dict(config or {})
    if hasattr(metric, "get_config"):
        return type(metric).__name__, {**metric.get_config(), **(config or {})}
    raise TypeError(f"metric must be a metric class name or a Keras metric; got {metric!r}")


def _variables_of(source: Any) -> dict[str, Any]:
    """Variable name -> value of what `merge_state` was given."""
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, RemoteMetric):
        return {v.name: v.value for v in source.variables}
    variables = getattr(source, "variables", None)
    if variables is None:
        raise TypeError("merge_state takes RemoteMetrics, Keras metrics or dicts of variables; "
                        f"got {source!r}")
    return {_short_name(v): np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            for v in variables}


def _copied_inputs(args: tuple[Any, ...], named: Mapping[str, Any], sample_weight: Any,
                   ) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray], np.ndarray | None]:
    """The inputs as numpy arrays of their own: the caller may reuse its buffers (or tensors)
    while the batch waits in the background queue."""
    if len(args) + len(named) > 3:
        raise TypeError(f"update_state takes at most 3 inputs; got {len(args) + len(named)}")
    arrays = tuple(np.array(as_array(a)) for a in args)
    named_arrays = {k: np.array(as_array(v)) for k, v in named.items()}
    weight = None if sample_weight is None else np.array(as_array(sample_weight))
    return arrays, named_arrays, weight


def _short_name(variable: Any) -> str:
    """A Keras variable's name without its metric's path (`auc/true_positives`)."""
    return str(getattr(variable, "name", "")).rsplit("/", 1)[-1]


class RemoteMetric:
    """One shared metric session with the Keras metric API.

    The session is created on first use (an existing one with the same config is fine).
    Every update carries a fresh Idempotency-Key and is retried per `retries` with that key,
    so no retry counts a batch twice. With `background=True`, `update_state` and
    `merge_state` only queue the batch (see `background.py` for the full-queue policy) and
    never raise; failures go to `on_error(exception, description)` and the log; `result()`,
    `variables`, `reset_state()` flush first.
    """

    def __init__(self, name: str, metric: Any, config: Mapping[str, Any] | None = None, *,
                 url: str | None = None, token: str | None = None,
                 client: TallyClient | None = None, timeout: float = DEFAULT_TIMEOUT,
                 retries: RetryPolicy | int | None = None, transport: Any = None,
                 ttl_seconds: int | None = None, slices: int | Mapping[str, Any] | None = None,
                 background: bool = False,
                 queue_size: int = 1000, block_seconds: float = 1.0,
                 on_error: ErrorCallback | None = None) -> None:
        if client is None and url is None:
            raise TypeError("RemoteMetric needs url= (or client=)")
        self.name = name
        self.metric, self.config = _metric_spec(metric, config)
        self.ttl_seconds = ttl_seconds
        self.slices = slices
        """The most distinct slice values (create's `slices`), or None: no slices."""
        self._owns_client = client is None
        self.client = client or TallyClient(str(url), token, timeout=timeout,
                                            transport=transport, retries=retries)
        self.epoch: int | None = None
        """The session's epoch as of the last answer this object received."""
        self._document: dict[str, Any] | None = None
        self._inputs: tuple[str, ...] = PAIR_INPUTS
        self._lock = threading.Lock()
        self.sender = BackgroundSender(name, capacity=queue_size, block_seconds=block_seconds,
                                       on_error=on_error) if background else None

    def __repr__(self) -> str:
        return f"RemoteMetric({self.name!r}, {self.metric!r}, url={self.client.options.url!r})"

    # -- session --
    @property
    def document(self) -> dict[str, Any]:
        """The session document (creating the session on first use)."""
        with self._lock:
            if self._document is None:
                self._document = self.client.create(self.name, self.metric, self.config,
                                                    slices=self.slices,
                                                    ttl_seconds=self.ttl_seconds)
                self._inputs = self._inputs_of(self._document["metric"])
                self.epoch = self._document.get("epoch")
            return self._document

    def _inputs_of(self, canonical: str) -> tuple[str, ...]:
        for entry in self.client.catalogue().get("metrics", []):
            if entry.get("name") == canonical:
                return tuple(entry.get("inputs") or PAIR_INPUTS)
        return PAIR_INPUTS

    @property
    def inputs(self) -> tuple[str, ...]:
        """What `update_state` takes: ("y_true", "y_pred") or ("values",)."""
        self.document  # noqa: B018 - resolves the inputs with the session
        return self._inputs

    # -- Keras metric API --
    def update_state(self, *args: Any, sample_weight: Any = None,
                     slice: SliceValue | None = None, slices: Any = None,
                     **named: Any) -> None:
        """`update_state(y_true, y_pred, sample_weight=None)`, or `(values, sample_weight=None)`
        for Mean/Sum-style metrics. Inputs are anything `np.asarray` converts. On a session
        created with `slices=`, `slice="fr"` puts the whole batch in one slice and
        `slices=[...]` gives each sample its slice (strings or integers, along the first
        axis); the overall result counts every sample either way. In background mode even
        inputs that do not convert are reported to `on_error`, not raised."""
        what = f"update of {self.name}"
        try:
            arrays, named_arrays, weight = _copied_inputs(args, named, sample_weight)
            if slice is not None and slices is not None:
                raise ValueError("give 'slice' (one value for the whole batch) or 'slices' "
                                 "(a value per sample), not both")
            slice = slice_value(slice)
            per_sample = None if slices is None else slice_array(slices)
        except (TypeError, ValueError) as exc:
            if self.sender is None:
                raise
            self.sender.reject(what, exc)
            return
        key = new_idempotency_key()

        def send() -> None:
            fields = self._fields(arrays, named_arrays, weight)
            self.epoch = self.client.update(self.name, idempotency_key=key, slice=slice,
                                            slices=per_sample, **fields)["epoch"]

        self._do(what, send)

    def _fields(self, args: tuple[Any, ...], named: dict[str, Any],
                sample_weight: Any) -> dict[str, Any]:
        names = (*self.inputs, "sample_weight")
        if len(args) > len(names):
            raise TypeError(f"{self.metric}.update_state takes {', '.join(names)}; "
                            f"got {len(args)} positional inputs")
        fields = dict(zip(names[:len(args)], args, strict=True))
        unknown = set(named) - set(names)
        if unknown:
            raise TypeError(f"{self.metric}.update_state got unexpected inputs {sorted(unknown)}")
        fields.update(named)
        if sample_weight is not None:
            fields["sample_weight"] = sample_weight
        return fields

    def __call__(self, *args: Any, sample_weight: Any = None, **named: Any) -> Any:
        """Update with one batch and return the result, as calling a Keras metric does."""
        self.update_state(*args, sample_weight=sample_weight, **named)
        return self.result()

    def merge_state(self, metrics: Any, *, slice: SliceValue | None = None) -> None:
        """Add other metrics' state: RemoteMetrics, Keras metrics, or dicts of variable
        name -> value (one item or a list of them; one atomic merge per item). With `slice`,
        the state is added to that slice and to the overall state."""
        items = metrics if isinstance(metrics, (list, tuple)) else [metrics]
        for item in items:
            variables = _variables_of(item)
            key = new_idempotency_key()

            def send(variables: dict[str, Any] = variables, key: str = key) -> None:
                self.document  # noqa: B018 - create the session first
                self.epoch = self.client.merge(self.name, variables, slice=slice,
                                               idempotency_key=key)["epoch"]

            self._do(f"merge into {self.name}", send)

    def result(self, slice: SliceValue | None = None) -> Any:
        """The shared result: a float, or a float32 array when Keras' result is a tensor (a
        dict of those for a collection). With `slice`, the result over that slice's samples
        only (`NotFound` when the epoch has not seen the value)."""
        self.flush()
        self.document  # noqa: B018
        answer = self.client.result(self.name, slice=slice)
        self.epoch = answer.get("epoch", self.epoch)
        return keras_result(answer["result"])

    def slice_results(self) -> dict[str, Any]:
        """Every slice's result in the current epoch, keyed by slice value (integers as
        their decimal strings, as the service keys them), converted as `result()` is."""
        self.flush()
        self.document  # noqa: B018
        answer = self.client.slices(self.name)
        self.epoch = answer.get("epoch", self.epoch)
        return {value: keras_result(result) for value, result in answer["slices"].items()}

    @property
    def variables(self) -> list[RemoteVariable]:
        return self.slice_variables(None)

    def slice_variables(self, slice: SliceValue | None) -> list[RemoteVariable]:
        """The variables of one slice's state (of the overall state for None)."""
        self.flush()
        self.document  # noqa: B018
        answer = self.client.variables(self.name, slice=slice)
        self.epoch = answer.get("epoch", self.epoch)
        return [RemoteVariable.from_document(v) for v in answer["variables"]]

    def reset_state(self, epoch: int | None = None) -> dict[str, Any]:
        """Close the session's epoch. With `epoch`, only if the session is at that epoch (else
        `Conflict`, whose `current_epoch` says where it is)."""
        self.flush()
        self.document  # noqa: B018
        answer = self.client.reset(self.name, epoch=epoch)
        self.epoch = answer["epoch"]
        return answer

    def get_config(self) -> dict[str, Any]:
        self.document  # noqa: B018
        return self.client.config(self.name)

    def history(self) -> list[dict[str, Any]]:
        """The closed epochs, oldest first: `[{"epoch", "result", "closed_at"}, ...]`, with
        `"slices": {value: result}` too on a session with slices."""
        self.document  # noqa: B018
        return list(self.client.history(self.name)["epochs"])

    # -- background --
    def _do(self, what: str, send: Callable[[], object]) -> None:
        if self.sender is None:
            send()
        else:
            self.sender.submit(what, send)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued batch is applied or has failed (background mode; else
        nothing to wait for). False if `timeout` passed first."""
        return True if self.sender is None else self.sender.flush(timeout)

    @property
    def dropped(self) -> int:
        """Batches dropped because the background queue stayed full."""
        return 0 if self.sender is None else self.sender.dropped

    @property
    def failed(self) -> int:
        """Background batches that failed after their retries."""
        return 0 if self.sender is None else self.sender.failed

    def close(self, timeout: float | None = None) -> None:
        """Flush and stop the sender; close the HTTP client if this metric made it."""
        if self.sender is not None:
            self.sender.close(timeout)
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> RemoteMetric:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

