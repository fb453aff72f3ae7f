"""RemoteMetric's local parts: argument mapping, result and variable conversion, specs."""

from __future__ import annotations

import json
import math

import httpx
import numpy as np
import pytest

from tally_client import RemoteMetric, RemoteVariable
from tally_client.remote import keras_result


class PairService:
    """A session whose metric takes y_true/y_pred; records the update bodies."""

    def __init__(self, inputs: list[str]) -> None:
        self.inputs = inputs
        self.bodies: list[dict] = []
        self.created: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.created.append(json.loads(request.content))
            return httpx.Response(200, json={"name": "s", "metric": "M", "epoch": 4})
        if request.url.path == "/v1/metrics":
            return httpx.Response(200, json={"metrics": [{"name": "M", "inputs": self.inputs}]})
        self.bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"epoch": 4, "samples": 1})


def metric_on(service: PairService, metric: object = "M", **options) -> RemoteMetric:
    return RemoteMetric("s", metric, url="http://tally",
                        transport=httpx.MockTransport(service), **options)


def test_positional_inputs_follow_the_metric_signature():
    pair = PairService(["y_true", "y_pred"])
    metric_on(pair).update_state([1], [0.5], [2.0])
    values = PairService(["values"])
    metric_on(values).update_state([1.0, 2.0], [3.0, 4.0])
    assert pair.bodies == [{"y_true": [1], "y_pred": [0.5], "sample_weight": [2.0]}]
    assert values.bodies == [{"values": [1.0, 2.0], "sample_weight": [3.0, 4.0]}]


def test_keyword_inputs_and_the_epoch_of_the_answer():
    service = PairService(["y_true", "y_pred"])
    metric = metric_on(service)
    metric.update_state(y_pred=[0.25], y_true=[0], sample_weight=0.5)
    assert service.bodies == [{"y_true": [0], "y_pred": [0.25], "sample_weight": 0.5}]
    assert metric.epoch == 4


@pytest.mark.parametrize(("args", "named"), [
    (([1], [0.5], [1.0], [1.0]), {}), (([1.0], [1.0], [1.0]), {}), ((), {"y_true": [1]}),
])
def test_wrong_inputs_raise_type_errors_in_blocking_mode(args, named):
    service = PairService(["values"])
    with pytest.raises(TypeError):
        metric_on(service).update_state(*args, **named)
    assert service.bodies == []


def test_a_keras_like_instance_gives_its_class_and_config():
    class AUC:
        def get_config(self) -> dict:
            return {"name": "auc", "num_thresholds": 7}

    service = PairService(["y_true", "y_pred"])
    metric = metric_on(service, AUC(), config={"curve": "PR"})
    metric.update_state([1], [0.5])
    assert service.created == [{"metric": "AUC", "config": {"name": "auc", "num_thresholds": 7,
                                                             "curve": "PR"}}]


def test_a_url_or_a_client_is_needed():
    with pytest.raises(TypeError, match="url"):
        RemoteMetric("s", "AUC")


def test_results_convert_as_keras_returns_them():
    assert keras_result(0.5) == 0.5 and isinstance(keras_result(1), float)
    assert math.isnan(keras_result(None))
    array = keras_result([[0.5, None], [1.0, 0.0]])
    assert array.dtype == np.float32 and array.shape == (2, 2) and np.isnan(array[0, 1])
    collection = keras_result({"auc": 0.75, "precision": [0.5, 1.0]})
    assert collection["auc"] == 0.75 and collection["precision"].shape == (2,)


def test_variables_keep_their_shape_and_dtype():
    variable = RemoteVariable.from_document({"name": "total_cm", "shape": [2, 2],
                                             "dtype": "float32", "value": [[1, 2], [3, 4]]})
    assert (variable.name, variable.shape, variable.dtype) == ("total_cm", (2, 2), "float32")
    assert variable.numpy().dtype == np.float32
    np.testing.assert_array_equal(np.asarray(variable), [[1, 2], [3, 4]])
    scalar = RemoteVariable.from_document({"name": "count", "shape": [], "value": 3})
    assert scalar.numpy().shape == () and float(scalar.numpy()) == 3.0
