"""`TallyCallback`: shared metric sessions in `model.fit` (needs keras; not a dependency).

At each epoch end the callback (optionally) feeds this worker's validation data through the
model into every `RemoteMetric`, flushes them, then closes the session epoch with the epoch
precondition: each worker asks "reset if you are still at epoch E", so however many workers
run the callback, epoch E is closed once; a worker whose reset comes second (a 409) reads the
closed epoch's result from the history instead. Every worker thus logs the same number, the
session's final result for that epoch, under the metric's key in `logs` (and in `History`).

With several workers the epoch closes when the FIRST worker reaches its end: batches another
worker sends after that land in the next epoch. Make workers meet before the callback (as
synchronous data-parallel training does) when that matters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

try:
    import keras
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("tally_client.keras needs keras (pip install keras): the client itself "
                      "does not depend on it") from exc

from tally_client.errors import Conflict
from tally_client.remote import RemoteMetric, keras_result


class TallyCallback(keras.callbacks.Callback):
    """Close shared sessions at epoch ends and put their results into `logs`.

    `metrics`: RemoteMetrics keyed by their log name (a list uses each session name).
    `validation_data`: `(x, y)` of this worker; when given, every epoch end predicts it and
    updates every metric with `(y, predictions)` before closing the epoch.
    """

    def __init__(self, metrics: Mapping[str, RemoteMetric] | Sequence[RemoteMetric], *,
                 validation_data: tuple[Any, Any] | None = None,
                 batch_size: int | None = None) -> None:
        super().__init__()
        self.metrics = dict(metrics) if isinstance(metrics, Mapping) else {
            m.name: m for m in metrics}
        self.validation_data = validation_data
        self.batch_size = batch_size
        self.session_epochs: dict[str, int] = {}
        """The session epoch each metric's next epoch end closes."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        for key, metric in self.metrics.items():
            self.session_epochs[key] = int(metric.document["epoch"])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.validation_data is not None:
            self._update_from_validation_data()
        for metric in self.metrics.values():
            metric.flush()
        for key, metric in self.metrics.items():
            value = self._close_epoch(key, metric)
            if logs is not None:
                logs[key] = value

    def _update_from_validation_data(self) -> None:
        x, y = self.validation_data  # type: ignore[misc]
        predictions = self.model.predict(x, batch_size=self.batch_size, verbose=0)
        for metric in self.metrics.values():
            metric.update_state(y, predictions)

    def _close_epoch(self, key: str, metric: RemoteMetric) -> Any:
        """Reset `metric`'s session if it is still at the expected epoch; the closed epoch's
        result either way."""
        expected = self.session_epochs.get(key)
        if expected is None:
            expected = self.session_epochs[key] = int(metric.document["epoch"])
        try:
            answer = metric.reset_state(epoch=expected)
        except Conflict as conflict:
            current = conflict.current_epoch
            if current is None or current <= expected:
                raise
            self.session_epochs[key] = current
            return self._closed_result(metric, expected)
        self.session_epochs[key] = int(answer["epoch"])
        return keras_result(answer["closed"]["result"])

    @staticmethod
    def _closed_result(metric: RemoteMetric, epoch: int) -> Any:
        for closed in metric.history():
            if closed["epoch"] == epoch:
                return keras_result(closed["result"])
        raise LookupError(f"session {metric.name!r}: epoch {epoch} is closed but no longer in "
                          "its history")
