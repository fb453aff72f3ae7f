"""The small-batch update's shortcuts (issue 7) give the same increments as the general path."""

from __future__ import annotations

import numpy as np

from app.metrics import engine
from app.metrics.registry import REGISTRY
from app.store.base import Batch
from app.store.redis import RUN, _encode_runs
from app.store.state import Runs, State, expand


def test_adjacent_whole_variables_travel_as_one_run():
    collector = engine._RunsCollector()  # noqa: SLF001 - the unit under test
    collector.whole("sum", 0, np.array([1.0, 2.0]))
    collector.whole("sum", 2, np.array([3.0]))
    collector.whole("sum", 5, np.array([4.0]))  # a gap: a run of its own
    runs = collector.build("sum")
    assert runs.starts.tolist() == [0, 5]
    assert runs.counts.tolist() == [3, 1]
    assert runs.values.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_a_precision_batch_is_one_run_of_both_counts():
    _, metric = REGISTRY.build("Precision", {})
    delta = engine.contribution(metric, {"y_true": np.array([1.0, 0.0, 0.0], np.float32),
                                         "y_pred": np.array([0.9, 0.8, 0.1], np.float32)},
                                None)
    assert len(delta.sum_runs) == 1
    assert delta.sums == {"true_positives:0": 1.0, "false_positives:0": 1.0}


def test_expand_one_run_and_many_runs():
    assert expand(np.array([3]), np.array([4])).tolist() == [3, 4, 5, 6]
    assert expand(np.array([0, 5]), np.array([2, 1])).tolist() == [0, 1, 5]
    state = State()
    state.add(Runs(np.array([2]), np.array([2]), np.array([1.0, 2.0])))
    assert state.sums.tolist() == [0.0, 0.0, 1.0, 2.0]


def test_one_run_of_sums_is_encoded_as_the_general_path_encodes_it():
    one = Batch(Runs(np.array([7]), np.array([2]), np.array([3.0, 5.0])), samples=4)
    heads = np.zeros(1, RUN)
    heads["kind"], heads["start"], heads["count"] = 0, 7, 2
    assert _encode_runs(one) == (heads.tobytes(), np.array([3.0, 5.0], "<f8").tobytes(), 1)
    two = Batch(Runs(np.array([7]), np.array([1]), np.array([3.0])),
                maxes=Runs(np.array([0]), np.array([1]), np.array([9.0])), samples=1)
    heads = np.zeros(2, RUN)
    heads["kind"], heads["start"], heads["count"] = [0, 1], [7, 0], [1, 1]
    assert _encode_runs(two) == (heads.tobytes(), np.array([3.0, 9.0], "<f8").tobytes(), 2)
