"""A plugin module for tests/test_stacked_results.py: a subclass of Tally's Mean whose result
is not elementwise on its variables: it divides by the count summed whole, which for one
session is Mean's result, and for stacked sessions would divide each by all their counts."""

import numpy as np

from app.metrics.reduction import Mean


class PooledMean(Mean):
    def __init__(self, name="pooled_mean", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def result(self):
        count = np.sum(self.count.value)
        return np.asarray(self.total.value) / count if count else np.zeros_like(self.total.value)
