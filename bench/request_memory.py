"""Peak server memory of the heaviest requests the default limits allow.

    python -m bench.request_memory

Starts Tally (one uvicorn worker, default settings) on a private redis-server and, for each
request, resets the process's peak-RSS counter (`/proc/<pid>/clear_refs`, Linux), sends it,
and prints the peak resident memory above what the process held just before. The requests:
updates and reads of the largest state (`MeanIoU` with as many classes as
TALLY_MAX_STATE_ELEMENTS allows) with the largest batch (TALLY_MAX_BATCH_ELEMENTS), and the
largest AUC batch as JSON and as `.npz`, and the largest sliced AUC batch. Memory figures
are not noisy the way times are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import orjson

from app.settings import Settings
from bench.hardening import npz
from bench.servers import private_redis, serving


def _status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def measure(pid: int, label: str, send: Callable[[], httpx.Response]) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := current RSS
    before = _status(pid, "VmRSS")
    response = send()
    assert response.status_code == 200, response.text
    peak = _status(pid, "VmHWM")
    print(f"  {label:48s} +{peak - before:6.0f} MB  (peak {peak:.0f} MB)")


def main() -> None:
    settings = Settings()
    classes = math.isqrt(settings.max_state_elements)
    pairs = settings.max_batch_elements // 2
    rng = np.random.default_rng(0)
    env = {"TALLY_REDIS_TIMEOUT_SECONDS": "30"}
    with private_redis() as redis, serving("tally", "app.main:app",
                                           {"TALLY_REDIS_URL": redis.url, **env}) as server, \
            httpx.Client(timeout=120) as c:
        pid, url = server.process.pid, server.url
        print(f"defaults: TALLY_MAX_STATE_ELEMENTS={settings.max_state_elements:,}, "
              f"TALLY_MAX_BATCH_ELEMENTS={settings.max_batch_elements:,}; idle RSS "
              f"{_status(pid, 'VmRSS'):.0f} MB")
        c.put(url + "/v1/sessions/big", json={"metric": "MeanIoU",
                                              "config": {"num_classes": classes}})
        cells = rng.permutation(classes * classes)
        npz_type = {"Content-Type": "application/x-npz"}
        for i, chunk in enumerate(np.array_split(cells, math.ceil(cells.size / pairs))):
            body = npz(y_true=(chunk // classes).astype(np.int32),
                       y_pred=(chunk % classes).astype(np.int32))
            measure(pid, f"MeanIoU({classes}) update {i}: {chunk.size:,} pairs (npz)",
                    lambda b=body: c.post(url + "/v1/sessions/big/update",  # type: ignore[misc]
                                          content=b, headers=npz_type))
        for what in ("result", "variables"):
            measure(pid, f"GET {what} of the full state",
                    lambda w=what: c.get(f"{url}/v1/sessions/big/{w}"))  # type: ignore[misc]
        measure(pid, "POST reset of the full state",
                lambda: c.post(url + "/v1/sessions/big/reset"))
        c.put(url + "/v1/sessions/auc", json={"metric": "AUC"})
        y_true = rng.integers(0, 2, pairs).astype(np.float32)
        y_pred = rng.random(pairs).astype(np.float32)
        body = orjson.dumps({"y_true": y_true.tolist(), "y_pred": y_pred.round(5).tolist()})
        measure(pid, f"AUC update: {pairs:,} samples, JSON ({len(body) / 1e6:.1f} MB)",
                lambda: c.post(url + "/v1/sessions/auc/update", content=body,
                               headers={"Content-Type": "application/json"}))
        packed = npz(y_true=y_true, y_pred=y_pred)
        measure(pid, f"AUC update: {pairs:,} samples, npz ({len(packed) / 1e6:.1f} MB)",
                lambda: c.post(url + "/v1/sessions/auc/update", content=packed,
                               headers=npz_type))
        sliced(c, url, pid, rng, settings)


def sliced(c: httpx.Client, url: str, pid: int, rng: np.random.Generator,
           settings: Settings) -> None:
    """The largest sliced AUC batch (y_true, y_pred and a slice value per sample share the
    batch limit), with 1000 slices: JSON with one 128-character value among short ones (a
    text array would be as wide as that value for every sample), and npz integer codes."""
    samples = settings.max_batch_elements // 3
    c.put(url + "/v1/sessions/sliced", json={"metric": "AUC", "slices": {"max": 1000}})
    y_true = rng.integers(0, 2, samples).astype(np.float32)
    y_pred = rng.random(samples).astype(np.float32)
    codes = rng.integers(0, 999, samples)
    labels = [str(v) for v in codes.tolist()]
    labels[0] = "x" * 128
    body = orjson.dumps({"y_true": y_true.tolist(), "y_pred": y_pred.round(5).tolist(),
                         "slices": labels})
    measure(pid, f"AUC, 1000 slices: {samples:,} samples, JSON ({len(body) / 1e6:.1f} MB)",
            lambda: c.post(url + "/v1/sessions/sliced/update", content=body,
                           headers={"Content-Type": "application/json"}))
    packed = npz(y_true=y_true, y_pred=y_pred, slices=codes)
    measure(pid, f"AUC, 1000 slices: {samples:,} samples, npz ({len(packed) / 1e6:.1f} MB)",
            lambda: c.post(url + "/v1/sessions/sliced/update", content=packed,
                           headers={"Content-Type": "application/x-npz"}))
    measure(pid, "GET slices of 1000 AUC slices",
            lambda: c.get(url + "/v1/sessions/sliced/slices"))


if __name__ == "__main__":
    main()
