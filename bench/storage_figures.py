"""State-size and metric-math figures, and the largest allowed state.

Part `memory` (issue 7, target 5): the Redis bytes of an `AUC(200)` session whose every bucket
was touched (MEMORY USAGE of each of the session's keys, found by its hash tag) against the 800
float64 values (6,400 bytes) it holds.

Part `engine` (target 6): `app.metrics.engine.contribution` of `AUC(num_thresholds=200)` for
65,536 samples against Keras' own `update_state` on the same arrays (KERAS_BACKEND=numpy; keras
is a test dependency in .venv), best of several, in this process.

Part `largest` (target 7): bench/hardening.py's measurement of a full `MeanIoU` at the default
state limit (1024 classes): the time
to read (result, variables), reset and delete it against an idle `GET /healthz`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import httpx
import numpy as np

from bench.bodies import JSON, body, labelled_batch
from bench.hardening import measure_largest_state
from bench.report import Row, millis
from bench.servers import private_redis, serving
from tests.redis_servers import RedisProcess

TALLY = "app.main:app"
AUC_THRESHOLDS = 200
ENGINE_BATCH = 65_536
DEFAULT_STORE_TIMEOUT = 5.0


def session_bytes(redis: RedisProcess, name: str) -> dict[str, int]:
    """MEMORY USAGE (all samples) of every key carrying the session's hash tag."""
    client = redis.client()
    return {key.decode(): int(client.memory_usage(key, samples=0) or 0)
            for key in client.scan_iter(match=f"tally:{{{name}}}:*")}


def memory_rows(url: str, redis: RedisProcess) -> list[Row]:
    name = "auc.memory"
    with httpx.Client(base_url=url, timeout=60) as client:
        created = client.put(f"/v1/sessions/{name}", json={
            "metric": "AUC", "config": {"num_thresholds": AUC_THRESHOLDS}})
        updated = client.post(f"/v1/sessions/{name}/update", content=body(ENGINE_BATCH, JSON),
                              headers={"Content-Type": JSON})
        if created.status_code != 201 or updated.status_code != 200:
            raise RuntimeError(f"AUC session: {created.text} {updated.text}")
    keys = session_bytes(redis, name)
    values = 4 * AUC_THRESHOLDS * 8
    total = sum(keys.values())
    listing = ", ".join(f"{k.split(':')[-1]} {v}" for k, v in sorted(keys.items()))
    return [Row("memory", f"Redis bytes of an AUC({AUC_THRESHOLDS}) session, every bucket "
                "touched", f"{total:,} B", f"{values:,} B (800 float64 values)", total / values,
                "<= 2x", f"MEMORY USAGE per key: {listing}")]


def best_of(repeat: int, call: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return min(times)


def keras_auc_update(y_true: np.ndarray, y_pred: np.ndarray) -> Callable[[], object]:
    """Keras' AUC(200).update_state on the numpy backend (imported only here: slow import)."""
    os.environ.setdefault("KERAS_BACKEND", "numpy")
    import keras

    if keras.backend.backend() != "numpy":
        raise RuntimeError(f"Keras runs on {keras.backend.backend()}, not numpy: set "
                           "KERAS_BACKEND=numpy before anything imports keras")
    metric = keras.metrics.AUC(num_thresholds=AUC_THRESHOLDS)
    return lambda: metric.update_state(y_true, y_pred)


def engine_rows(repeat: int = 7) -> list[Row]:
    from app.metrics import engine
    from app.metrics.registry import REGISTRY

    y_true, y_pred = labelled_batch(ENGINE_BATCH)
    _, auc = REGISTRY.build("AUC", {"num_thresholds": AUC_THRESHOLDS})
    inputs = {"y_true": y_true, "y_pred": y_pred}
    ours = best_of(repeat, lambda: engine.contribution(auc, inputs, None))
    theirs = best_of(repeat, keras_auc_update(y_true, y_pred))
    return [Row("engine", f"AUC({AUC_THRESHOLDS}) contribution, {ENGINE_BATCH:,} samples "
                "(in process)", millis(ours), f"{millis(theirs)} (Keras update_state, numpy)",
                ours / theirs, "<= 0.25x", f"best of {repeat}; time ratio (lower is better)")]


def largest_rows(url: str, redis: RedisProcess) -> list[Row]:
    state = measure_largest_state(url, redis)
    base = state.healthz_seconds
    rows = [Row("largest", f"full MeanIoU({state.classes}): {what}", millis(seconds),
                f"{millis(base)} (idle GET /healthz)", seconds / base, "",
                "time ratio; one request" + (" (over the default 5 s store timeout)"
                                             if seconds > DEFAULT_STORE_TIMEOUT else ""))
            for what, seconds in state.seconds.items()]
    rows[0].note += (f"; state {state.elements:,} elements, {state.redis_bytes / 1e6:.1f} MB "
                     f"in Redis ({state.redis_bytes / (8 * state.elements):.2f}x the float64 "
                     "values)")
    return rows


def with_tally_on_redis(env: dict[str, str],
                        rows: Callable[[str, RedisProcess], list[Row]]) -> list[Row]:
    with private_redis() as redis, serving("tally", TALLY,
                                           {"TALLY_REDIS_URL": redis.url, **env}) as server:
        return rows(server.url, redis)


def memory_part(env: dict[str, str]) -> list[Row]:
    return with_tally_on_redis(env, memory_rows)


#: Filling the largest state writes 4 batches of 1M cells; on a busy shared machine one can take
#: longer than the default 5 s store timeout (a 504). The timed requests are reported as
#: measured either way; the note says when one took longer than the default.
LARGEST_ENV = {"TALLY_REDIS_TIMEOUT_SECONDS": "30"}


def largest_part(env: dict[str, str]) -> list[Row]:
    return with_tally_on_redis({**LARGEST_ENV, **env}, largest_rows)


def engine_part(env: dict[str, str]) -> list[Row]:
    return engine_rows()
