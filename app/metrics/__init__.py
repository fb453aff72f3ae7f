"""The metric engine: Keras-exact metrics in numpy (see base.py and engine.py).

Plugin authors import `Metric` (and `Variable`, `MeanMetricWrapper`) from here."""

from app.metrics.base import Metric, Variable
from app.metrics.reduction import MeanMetricWrapper

__all__ = ["MeanMetricWrapper", "Metric", "Variable"]
