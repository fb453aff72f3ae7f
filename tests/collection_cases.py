"""Metric collections for the tests, and the Keras oracle for them: one real Keras metric per
member, compared member by member (result, variables under `"<member>/<variable>"`, config)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.oracle import (
    assert_close,
    json_array,
    keras_metric,
    keras_update,
    keras_variables,
    normalise_config,
)

Members = list[dict[str, Any]]

#: (members, batch kind of tests/cases.py). Between them: shared state (Precision/Recall,
#: TP/FP/TN/FN, AUC ROC/PR, the *At* family), members skipped because another stores all their
#: state, lazily shaped members (F1Score, R2Score, AUC multi-label), reduction metrics.
COLLECTIONS: list[tuple[Members, str]] = [
    ([{"metric": "Precision"}, {"metric": "Recall"}, {"metric": "AUC"},
      {"metric": "F1Score"}], "binary"),
    ([{"metric": "AUC", "config": {"num_thresholds": 50}},
      {"metric": "AUC", "config": {"num_thresholds": 50, "curve": "PR", "name": "pr_auc"}},
      {"metric": "PrecisionAtRecall", "config": {"recall": 0.7}},
      {"metric": "RecallAtPrecision", "config": {"precision": 0.6}},
      {"metric": "SensitivityAtSpecificity", "config": {"specificity": 0.5}},
      {"metric": "TruePositives"}, {"metric": "FalsePositives"},
      {"metric": "TrueNegatives"}, {"metric": "FalseNegatives"},
      {"metric": "Precision"}, {"metric": "Recall"}, {"metric": "BinaryAccuracy"}], "binary"),
    ([{"metric": "Mean"}, {"metric": "Sum"}, {"metric": "Mean", "config": {"name": "mean_2"}}],
     "values"),
    ([{"metric": "mse"}, {"metric": "R2Score"}, {"metric": "CosineSimilarity"},
      {"metric": "R2Score", "config": {"class_aggregation": None, "num_regressors": 1,
                                       "name": "r2_raw"}}], "regression"),
    ([{"metric": "AUC", "config": {"multi_label": True}},
      {"metric": "AUC", "config": {"multi_label": True, "num_labels": 4, "curve": "PR",
                                   "name": "auc_pr4"}},
      {"metric": "Precision", "config": {"top_k": 2, "class_id": 1}},
      {"metric": "Recall", "config": {"top_k": 2, "class_id": 1}}], "binary"),
    ([{"metric": "CategoricalAccuracy"}, {"metric": "TopKCategoricalAccuracy",
                                          "config": {"k": 2}},
      {"metric": "F1Score", "config": {"average": "macro"}},
      {"metric": "CategoricalCrossentropy"}], "categorical"),
]
IDS = [f"{i}-" + "+".join(m["metric"] for m in members)[:60]
       for i, (members, _) in enumerate(COLLECTIONS)]


class KerasCollection:
    """One Keras metric per member, keyed by the member's name."""

    def __init__(self, members: Members) -> None:
        self.metrics = {}
        for member in members:
            reference = keras_metric(member["metric"], member.get("config"))
            name = (member.get("config") or {}).get("name") or _base_name(reference.name)
            self.metrics[name] = reference

    def update(self, batch: dict[str, Any]) -> None:
        for reference in self.metrics.values():
            keras_update(reference, batch)

    def reset(self) -> None:
        for reference in self.metrics.values():
            reference.reset_state()

    def variables(self) -> list[tuple[str, np.ndarray]]:
        return [(f"{member}/{name}", value) for member, reference in self.metrics.items()
                for name, value in keras_variables(reference)]

    def compare_result(self, result: dict[str, Any], where: str) -> None:
        assert list(result) == list(self.metrics), f"{where}: members {list(result)}"
        for member, reference in self.metrics.items():
            assert_close(json_array(result[member]), np.asarray(reference.result()),
                         f"{where}: result of {member}")

    def compare_variables(self, variables: list[dict[str, Any]], where: str) -> None:
        theirs = self.variables()
        assert [v["name"] for v in variables] == [n for n, _ in theirs], f"{where}: names"
        for ours, (name, value) in zip(variables, theirs, strict=True):
            assert ours["shape"] == list(np.shape(value)), f"{where}: shape of {name}"
            assert_close(json_array(ours["value"]), value, f"{where}: variable {name}")

    def compare_config(self, config: dict[str, Any], where: str) -> None:
        entries = config["metrics"]
        assert [e["class_name"] for e in entries] == [type(r).__name__
                                                     for r in self.metrics.values()], where
        for entry, reference in zip(entries, self.metrics.values(), strict=True):
            assert normalise_config(entry["config"]) == normalise_config(
                reference.get_config()), f"{where}: config of {entry['config']['name']}"


def _base_name(name: str) -> str:
    """Keras numbers a second metric of one default name (`auc_1`); the member is `auc`."""
    return normalise_config({"name": name})["name"]
