"""Keras' own metric tests that do not pass against Tally, each with why.

Every other test in `keras/src/metrics/*_test.py` must pass with the classes replaced by
Tally sessions (tests/test_keras_own_suite.py fails on any new failure, on a listed test
that starts passing, and on a listed test that fails for another reason than the one given).

Each entry: test id -> (category, reason, a fragment of the failure message). Categories:

* NOT_APPLICABLE: the test needs something a metric service cannot offer (a Keras model's
  `fit`, symbolic KerasTensors, private methods, Python-only attributes, replacing a variable
  in place).
* DIFFERENCE: a documented, deliberate difference (README "Differences from Keras").

No Tally bug is listed here: those were fixed (`dtype="int32"` for the mean metrics; config
error messages now use Keras' wording, which Keras' tests match, followed by what a JSON caller
needs).
"""

from __future__ import annotations

NOT_APPLICABLE = "not applicable"
DIFFERENCE = "deliberate difference"

# -- reasons, shared by several tests ----------------------------------------------------------

FIT = "trains a Keras model with the metric in compile(); the numpy backend cannot fit at all"
SYMBOLIC = ("calls the metric on symbolic KerasTensors (compute_output_spec) to infer the "
            "result's shape; their placeholder values are uninitialised memory, so the proxy "
            "refuses symbolic calls rather than send them as data")
IOU_RANGE = ("IoU ids outside [0, num_classes) are a 422 (contract: labels outside what the "
             "metric accepts); Keras drops such pairs silently. Declare void labels as "
             "ignore_class")
AUC_THRESHOLDS = ("reads AUC.thresholds (the list with Keras' two epsilon endpoints), a Python "
                  "attribute the HTTP API does not expose; the session config has the given "
                  "thresholds")

EXPECTED: dict[str, tuple[str, str, str]] = {
    # accuracy, confusion, curves -----------------------------------------------------------
    "confusion_metrics_test.py::AUCTest::test_config": (
        NOT_APPLICABLE, "compares AUC.curve with Keras' AUCCurve enum object; the config "
        "answers the string 'PR'", "AUCCurve.PR"),
    "confusion_metrics_test.py::AUCTest::test_config_manual_thresholds": (
        NOT_APPLICABLE, AUC_THRESHOLDS, "shapes (2,), (4,) mismatch"),
    "confusion_metrics_test.py::AUCTest::test_manual_thresholds": (
        NOT_APPLICABLE, AUC_THRESHOLDS, "shapes (1,), (3,) mismatch"),
    "confusion_metrics_test.py::MultiAUCTest::test_manual_thresholds": (
        NOT_APPLICABLE, AUC_THRESHOLDS, "shapes (1,), (3,) mismatch"),
    "confusion_metrics_test.py::RecallAtPrecisionTest::test_end_to_end": (
        NOT_APPLICABLE, FIT, "fit not implemented"),
    "confusion_metrics_test.py::SensitivityAtSpecificityTest::test_handles_sas_metrics": (
        NOT_APPLICABLE, FIT, "fit not implemented"),
    # F-scores --------------------------------------------------------------------------------
    "f_score_metrics_test.py::FBetaScoreTest::test_non_2d_input_shapes_raises_value_error": (
        NOT_APPLICABLE, "calls the private FBetaScore._build(shapes) directly", "'_build'"),
    "f_score_metrics_test.py::FBetaScoreTest::test_undefined_output_dim_raises_value_error": (
        NOT_APPLICABLE, "calls the private FBetaScore._build(shapes) with symbolic None "
        "dimensions", "'_build'"),
    # IoU -------------------------------------------------------------------------------------
    "iou_metrics_test.py::IoUTest::test_compilation": (NOT_APPLICABLE, FIT, "fit not implemented"),
    "iou_metrics_test.py::MeanIoUTest::test_big_chunk": (
        NOT_APPLICABLE, "replaces the metric's variable with add_variable(initializer=...) to "
        "start from a given matrix (the service's equivalent is POST .../merge)",
        "'add_variable'"),
    "iou_metrics_test.py::IoUTest::test_negative_y_pred_ignored": (
        DIFFERENCE, IOU_RANGE, "y_pred class ids in [0, 2); got 1 id(s) outside it: -1"),
    "iou_metrics_test.py::IoUTest::test_negative_y_true_ignored": (
        DIFFERENCE, IOU_RANGE, "y_true class ids in [0, 2); got 1 id(s) outside it: -1"),
    "iou_metrics_test.py::IoUTest::test_out_of_range_y_pred_ignored": (
        DIFFERENCE, IOU_RANGE, "y_pred class ids in [0, 2); got 1 id(s) outside it: 2"),
    "iou_metrics_test.py::IoUTest::test_out_of_range_y_true_ignored": (
        DIFFERENCE, IOU_RANGE, "y_true class ids in [0, 2); got 1 id(s) outside it: 2"),
    "iou_metrics_test.py::MeanIoUTest::test_negative_ignored": (
        DIFFERENCE, IOU_RANGE, "y_true class ids in [0, 2); got 1 id(s) outside it: -1"),
    "iou_metrics_test.py::MeanIoUTest::test_out_of_range_ignored": (
        DIFFERENCE, IOU_RANGE, "y_true class ids in [0, 2); got 1 id(s) outside it: 3"),
    "iou_metrics_test.py::MeanIoUTest::test_user_warning_float_weight": (
        DIFFERENCE, "IoU adds float sample weights exactly instead of truncating them to the "
        "int32 matrix, so there is no truncation warning to give", "DID NOT WARN"),
    # reduction ---------------------------------------------------------------------------------
    "reduction_metrics_test.py::MeanTest::test_weighted_dynamic_shapes": (
        NOT_APPLICABLE, SYMBOLIC, "cannot be traced symbolically"),
    "reduction_metrics_test.py::MetricWrapperTest::test_weighted_dynamic_shape": (
        NOT_APPLICABLE, SYMBOLIC, "cannot be traced symbolically"),
}

#: Tests that pass without sending a single request to Tally: they exercise only Keras (the
#: abstract Metric base class, Keras' metric functions, an empty test), so they are counted as
#: not applicable rather than as passes.
KERAS_ONLY: dict[str, str] = {
    **{f"metric_test.py::MetricTest::test_{name}": "tests the abstract keras Metric base class "
       "with subclasses defined in the test" for name in (
        "default_dtype", "dtype_arg", "end_to_end_flow", "serialization",
        "stateless_reset_state", "stateless_result", "stateless_update_state",
        "submetric_tracking", "variable_tracking")},
    "correlation_metrics_test.py::CorrelationsTest::test_concordance_function":
        "tests the function keras.metrics.concordance_correlation, not the metric class",
    "correlation_metrics_test.py::CorrelationsTest::test_pearson_function":
        "tests the function keras.metrics.pearson_correlation, not the metric class",
    "regression_metrics_test.py::MeanSquaredErrorTest::test_config": "an empty test ('TODO')",
}
