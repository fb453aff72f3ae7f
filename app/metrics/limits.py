"""Caps on what a metric config may ask for, in one place so that the service can import and
document them. Keras has none of these limits; each keeps one request's state (and the work
of one update) bounded whatever a client sends."""

from __future__ import annotations

MAX_THRESHOLDS = 10_000
"""The most thresholds a thresholded metric keeps: Precision, Recall, TruePositives, ...
(`thresholds`), AUC (`num_thresholds`, or explicit thresholds with their two endpoints) and
the *At* family (`num_thresholds`). Each variable has one element per threshold."""

MAX_IOU_CLASSES = 2048
"""The largest `num_classes` of the IoU family (a 2048 x 2048 confusion matrix is 4M cells)."""

MAX_AUC_LABEL_ELEMENTS = 1_000_000
"""The most elements one of a multi-label AUC's variables may have (thresholds x labels)."""

MAX_COLLECTION_MEMBERS = 32
"""The most members a metric collection may have. Every member's update runs on every batch,
so the cap bounds one update's work (the state limit bounds the whole collection's state, as
for one metric)."""
