"""A streaming Huber metric, as the Keras custom-metric examples write it: a `threshold` in its
config, `total` and `count` variables, the mean Huber loss over every element seen."""

import numpy as np

from app.metrics import Metric


def huber(y_true, y_pred, threshold):
    error = np.asarray(y_true) - np.asarray(y_pred)
    small = np.abs(error) < threshold
    return np.where(small, np.square(error) / 2, threshold * np.abs(error) - threshold**2 / 2)


class HuberMetric(Metric):
    def __init__(self, threshold=1.0, **kwargs):
        super().__init__(**kwargs)
        self.threshold = threshold
        self.total = self.add_weight("total", initializer="zeros")
        self.count = self.add_weight("count", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = huber(y_true, y_pred, self.threshold)
        self.total.assign_add(np.sum(values))
        self.count.assign_add(np.size(y_true))

    def result(self):
        return self.total / self.count

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}
