"""A plugin module for the tests, loaded through TALLY_PLUGINS: max/min aggregations, a
stateless function, and a metric whose update is not an increment (refused at first use)."""

import numpy as np

from app.metrics import Metric


class MaxAbsoluteError(Metric):
    """The largest |y_true - y_pred| seen, and the smallest."""

    def __init__(self, name="max_absolute_error", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.largest = self.add_variable(shape=(), initializer=-np.inf, aggregation="max",
                                         name="largest")
        self.smallest = self.add_variable(shape=(), initializer=np.inf, aggregation="min",
                                          name="smallest")

    def update_state(self, y_true, y_pred, sample_weight=None):
        errors = np.abs(np.asarray(y_true) - np.asarray(y_pred))
        if errors.size:
            self.largest.assign(np.maximum(self.largest, errors.max()))
            self.smallest.assign(np.minimum(self.smallest, errors.min()))

    def result(self):
        return np.asarray(self.largest)


class ExponentialAverage(Metric):
    """Not servable: each update reads and decays the state."""

    def __init__(self, name="exponential_average", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.value = self.add_variable(shape=(), name="value")

    def update_state(self, values, sample_weight=None):
        self.value.assign(0.9 * self.value + 0.1 * np.mean(values))

    def result(self):
        return self.value


def symmetric_absolute_percentage_error(y_true, y_pred, epsilon=1e-7):
    """Per-sample sMAPE over the last axis."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    ratio = np.abs(y_true - y_pred) / np.maximum(np.abs(y_true) + np.abs(y_pred), epsilon)
    return 200.0 * np.mean(ratio, axis=-1)


STATELESS_METRICS = {"smape": symmetric_absolute_percentage_error}
