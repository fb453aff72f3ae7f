"""Metric collections in the engine: every member against real Keras after every batch, the
compute groups (what they store, what they save, what they refuse), lazily shaped members,
the state limit, and the bad collections."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.errors import ConfigError, InvalidInput, NotFound
from app.metrics import engine
from app.metrics.collection import (
    COLLECTION,
    MAX_MEMBERS,
    MetricCollection,
    build_collection,
    build_metric,
)
from app.metrics.registry import REGISTRY
from app.store.state import State
from tests.cases import batches
from tests.collection_cases import COLLECTIONS, IDS, KerasCollection
from tests.oracle import tally_inputs


def collection(members, shared=None) -> MetricCollection:
    args = {"metrics": members} if shared is None else {"metrics": members, "shared": shared}
    return build_collection(REGISTRY, args)


class Stored:
    """A state summed from per-batch contributions, exactly as the stores do."""

    def __init__(self) -> None:
        self.state = State()
        self.layout = None

    def apply(self, delta: engine.Contribution) -> None:
        self.state.add(delta.sum_runs)
        self.state.extreme(delta.max_runs, "max")
        self.state.extreme(delta.min_runs, "min")
        self.layout = delta.layout or self.layout


def written(delta: engine.Contribution) -> int:
    """State elements one contribution writes (every run's values)."""
    return int(delta.sum_runs.values.size + delta.max_runs.values.size
               + delta.min_runs.values.size)


@pytest.mark.parametrize(("members", "kind"), COLLECTIONS, ids=IDS)
def test_every_member_equals_keras_after_every_batch(members, kind):
    metric = collection(members)
    reference = KerasCollection(members)
    reference.compare_config(metric.get_config(), "config")
    stored = Stored()
    for step, batch in enumerate(batches(kind, seed=7)):
        reference.update(batch)
        arrays, weight = tally_inputs(batch)
        stored.apply(engine.contribution(metric, arrays, weight, stored.layout))
        where = f"batch {step}"
        reference.compare_result(engine.result_json(metric, stored.state, stored.layout), where)
        reference.compare_variables(
            engine.variables_json(metric, stored.state, stored.layout), where)


@pytest.mark.parametrize(("members", "kind"), COLLECTIONS, ids=IDS)
def test_a_collection_writes_what_its_members_write_less_the_shared_state(members, kind):
    """Without groups a batch writes exactly what the members write alone; with them, it
    writes only the stored variables' elements: never more, and less where state is shared."""
    grouped, ungrouped = collection(members), collection(members, shared=[])
    alone = [REGISTRY.build(m["metric"], m.get("config"))[1] for m in members]
    for batch in batches(kind, seed=3, count=3):
        arrays, weight = tally_inputs(batch)
        separately = sum(written(engine.contribution(m, arrays, weight)) for m in alone)
        assert written(engine.contribution(ungrouped, arrays, weight)) == separately
        together = written(engine.contribution(grouped, arrays, weight))
        assert together <= separately
        if grouped.variable_aliases():
            assert together < separately


def test_shared_state_is_stored_once_and_shown_under_every_name():
    members = [{"metric": "Precision", "config": {"thresholds": [0.2, 0.6]}},
               {"metric": "Recall", "config": {"thresholds": [0.2, 0.6]}},
               {"metric": "Recall", "config": {"thresholds": [0.6], "name": "recall_06"}}]
    metric = collection(members)
    assert metric.variable_aliases() == {
        "precision/true_positives": ["precision/true_positives", "recall/true_positives"]}
    assert [v.name for v in metric.stored_variables] == [
        "precision/true_positives", "precision/false_positives", "recall/false_negatives",
        "recall_06/true_positives", "recall_06/false_negatives"]
    assert [v.name for v in metric.variables] == [
        "precision/true_positives", "precision/false_positives", "recall/true_positives",
        "recall/false_negatives", "recall_06/true_positives", "recall_06/false_negatives"]
    assert metric.state_elements() == 2 + 2 + 2 + 1 + 1


def test_different_thresholds_top_k_class_id_or_logits_do_not_share():
    for other in ({"thresholds": [0.5, 0.7]}, {"top_k": 1}, {"class_id": 0},
                  {"thresholds": 0.4}):
        metric = collection([{"metric": "Precision"}, {"metric": "Recall", "config": other}])
        assert metric.variable_aliases() == {}, other
    aucs = collection([{"metric": "AUC"}, {"metric": "AUC", "config": {
        "from_logits": True, "name": "auc_logits"}}])
    assert aucs.variable_aliases() == {}


def test_a_member_whose_state_another_stores_is_not_run():
    """AUC(PR) beside AUC(ROC) with the same thresholds: one AUC update serves both."""
    metric = collection([{"metric": "AUC"}, {"metric": "AUC", "config": {
        "curve": "PR", "name": "pr_auc"}}])
    calls = []
    second = metric.members[1].metric
    original = second.update_state
    second.update_state = lambda *a, **k: (calls.append(1), original(*a, **k))  # type: ignore
    batch = batches("binary", seed=1, count=1)[0]
    arrays, weight = tally_inputs(batch)
    engine.contribution(metric, arrays, weight)
    assert calls == []
    # ... and its variables hold the leader's values (as its own update would have made them)
    for own, leader in zip(second.variables, metric.members[0].metric.variables, strict=True):
        np.testing.assert_array_equal(own.value, leader.value)


def test_recorded_groups_fix_the_layout_whatever_the_declarations_say():
    """A stored session's groups come from its record, not from today's share keys: with no
    groups recorded, nothing is shared, and the results and variables are the same."""
    members = [{"metric": "Precision"}, {"metric": "Recall"}]
    grouped, ungrouped = collection(members), collection(members, shared=[])
    assert grouped.shared_names() == [["precision/true_positives", "recall/true_positives"]]
    assert ungrouped.shared_names() == []
    answers = []
    for metric in (grouped, ungrouped):
        stored = Stored()
        for batch in batches("binary", seed=5, count=3):
            stored.apply(engine.contribution(metric, *tally_inputs(batch)))
        answers.append((engine.result_json(metric, stored.state),
                        engine.variables_json(metric, stored.state)))
    assert answers[0] == answers[1]


def test_a_recorded_group_of_variables_that_cannot_share_is_refused():
    with pytest.raises(ConfigError, match="compute group"):
        collection([{"metric": "Precision"}, {"metric": "AUC"}],
                   shared=[["precision/true_positives", "auc/true_positives"]])
    with pytest.raises(ConfigError, match="compute group"):
        collection([{"metric": "Precision"}], shared=[["precision/true_positives", "x/y"]])


def test_merge_takes_prefixed_names_and_a_group_once():
    members = [{"metric": "Precision"}, {"metric": "Recall"}]
    metric = collection(members)
    values = {"precision/true_positives": np.array([3.0]),
              "recall/true_positives": np.array([3.0]),
              "precision/false_positives": np.array([1.0]),
              "recall/false_negatives": np.array([2.0])}
    stored = Stored()
    stored.apply(engine.merge_contribution(metric, values))
    variables = {v["name"]: v["value"] for v in engine.variables_json(metric, stored.state)}
    assert variables == {k: v.tolist() for k, v in values.items()}
    assert engine.result_json(metric, stored.state) == {
        "precision": pytest.approx(3 / 4), "recall": pytest.approx(3 / 5)}


def test_merge_refuses_part_of_a_group_or_unequal_values():
    metric = collection([{"metric": "Precision"}, {"metric": "Recall"}])
    with pytest.raises(InvalidInput, match=r"equal values or none; got only \['recall/true"):
        engine.merge_contribution(metric, {"recall/true_positives": np.array([1.0])})
    with pytest.raises(InvalidInput, match="must give them equal values"):
        engine.merge_contribution(metric, {"precision/true_positives": np.array([1.0]),
                                           "recall/true_positives": np.array([2.0])})
    with pytest.raises(InvalidInput, match="unknown variable"):
        engine.merge_contribution(metric, {"true_positives": np.array([1.0])})


def test_lazy_members_keep_their_layouts_under_their_names():
    members = [{"metric": "F1Score"}, {"metric": "Precision"},
               {"metric": "AUC", "config": {"multi_label": True}}]
    metric = collection(members)
    assert not metric.built and metric.layout is None
    assert engine.result_json(metric, State()) == {"f1_score": None, "precision": 0.0,
                                                   "auc": None}
    batch = batches("binary", seed=2, count=1)[0]
    delta = engine.contribution(metric, *tally_inputs(batch))
    assert delta.layout == {"f1_score": {"num_classes": 4}, "auc": {"num_labels": 4}}
    with pytest.raises(InvalidInput, match="send an update before merging"):
        engine.merge_contribution(collection(members), {})

def test_a_failed_first_batch_leaves_no_layout_behind():
    """F1Score builds for 2 classes, then AUC refuses the batch (its 4 label weights need 4
    labels): the next batch, of 4 classes, builds both afresh."""
    fresh = collection([{"metric": "F1Score"}, {"metric": "AUC", "config": {
        "multi_label": True, "label_weights": [1, 2, 3, 4]}}])
    two = np.zeros((3, 2), np.float32)
    with pytest.raises(InvalidInput, match=r"member 'auc' \(AUC\): label_weights"):
        engine.contribution(fresh, {"y_true": two, "y_pred": two}, None)
    batch = batches("binary", seed=2, count=1)[0]
    delta = engine.contribution(fresh, *tally_inputs(batch), None)
    assert delta.layout == {"f1_score": {"num_classes": 4}, "auc": {"num_labels": 4}}


def test_the_state_limit_counts_the_collection_as_a_whole():
    members = [{"metric": "AUC", "config": {"num_thresholds": 1000}},
               {"metric": "AUC", "config": {"num_thresholds": 1000, "curve": "PR",
                                            "name": "pr"}},
               {"metric": "AUC", "config": {"num_thresholds": 500, "name": "coarse"}}]
    metric = collection(members)
    stored = 4 * 1000 + 4 * 500  # ROC and PR share their counts
    metric.limit_state(stored)
    with pytest.raises(ConfigError, match=f"would keep {stored:,} state elements"):
        collection(members).limit_state(stored - 1)


def test_the_state_limit_checks_a_lazy_members_first_batch():
    members = [{"metric": "AUC", "config": {"num_thresholds": 100}},
               {"metric": "AUC", "config": {"multi_label": True, "num_thresholds": 100,
                                            "name": "per_label"}}]
    batch = {"y_true": np.zeros((2, 5), np.float32), "y_pred": np.zeros((2, 5), np.float32)}
    fits = collection(members)
    fits.limit_state(4 * 100 + 4 * 100 * 5)
    engine.contribution(fits, batch, None)
    tight = collection(members)
    tight.limit_state(4 * 100 + 4 * 100 * 5 - 1)
    with pytest.raises(InvalidInput, match="state elements"):
        engine.contribution(tight, batch, None)


@pytest.mark.parametrize(("entries", "error", "match"), [
    ([], ConfigError, "non-empty list"),
    ("Precision", ConfigError, "non-empty list"),
    ([{"metric": "Precision"}] * 2, ConfigError, "both named 'precision'"),
    ([{"metric": "Precision", "config": {"name": "x"}}, {"metric": "Recall",
                                                       "config": {"name": "x"}}],
     ConfigError, "both named 'x'"),
    ([{"metric": "Precision"}, {"metric": "Mean"}], ConfigError, "take the same inputs"),
    ([{"metric": "Precision"}, {"metric": "NoSuchMetric"}], NotFound, "NoSuchMetric"),
    ([{"metric": "Precision", "config": {"thresholds": 2.0}}], ConfigError, "threshold"),
    ([{"metric": "Precision", "config": {"nope": 1}}], ConfigError, "nope"),
    ([{"metric": "Precision", "confg": {}}], ConfigError, "unknown field"),
    (["Precision"], ConfigError, r"metrics\[0\] must be an object"),
    ([{"config": {}}], ConfigError, r"metrics\[0\].metric must be"),
    ([{"metric": "Precision", "config": [1]}], ConfigError, r"metrics\[0\].config must be"),
    ([{"metric": "Mean", "config": {"name": f"m{i}"}} for i in range(MAX_MEMBERS + 1)],
     ConfigError, f"at most {MAX_MEMBERS} members"),
])
def test_bad_collections_are_refused_saying_why(entries, error, match):
    with pytest.raises(error, match=match):
        build_metric(REGISTRY, COLLECTION, {"metrics": entries})


def test_the_largest_collection_is_allowed():
    entries = [{"metric": "Mean", "config": {"name": f"m{i}"}} for i in range(MAX_MEMBERS)]
    name, metric = build_metric(REGISTRY, COLLECTION, {"metrics": entries})
    assert name == COLLECTION and len(metric.variables) == 2 * MAX_MEMBERS
    assert metric.state_elements() == math.prod((2, MAX_MEMBERS))
