"""The Keras guide's `BinaryTruePositives`: counts elements where label and prediction are both
true (non-zero), weighted by `sample_weight`."""

import numpy as np

from app.metrics import Metric


class BinaryTruePositives(Metric):
    def __init__(self, name="binary_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), initializer="zeros", name="tp")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = np.asarray(y_true).astype(bool)
        y_pred = np.asarray(y_pred).astype(bool)
        values = np.logical_and(y_true, y_pred).astype(self.dtype)
        if sample_weight is not None:
            sample_weight = np.broadcast_to(np.asarray(sample_weight, self.dtype), values.shape)
            values = values * sample_weight
        self.true_positives.assign(self.true_positives + np.sum(values))

    def result(self):
        return self.true_positives
