"""A plugin module that must be refused when loaded: an aggregation Tally cannot serve."""

from app.metrics import Metric


class MedianOfBatches(Metric):
    def __init__(self, name="median_of_batches", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.median = self.add_variable(shape=(), aggregation="median", name="median")

    def update_state(self, values, sample_weight=None):
        self.median.assign(values)

    def result(self):
        return self.median
