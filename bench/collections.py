"""What a metric collection saves: fields written per update and stored, and time per update.

    python -m bench.collections [--samples 256] [--updates 300] [--repeat 5]

For a few collections a training job would keep, on one batch of binary predictions:

* fields written per update (non-zero increments of the batch, what the store script
  applies) and state elements stored, with compute groups and without (the same members, no
  state shared), against the members as separate sessions (the same as without groups);
* in-process CPU time of `--updates` updates through the service on the memory store: one
  collection session against one session per member (each batch posted to every member),
  as a ratio measured in the same run (the two alternate; best of `--repeat` each);
* the same through HTTP on the in-process app (httpx over ASGI, JSON bodies, no network):
  one collection POST per batch against one POST per member.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from typing import Any

import httpx
import numpy as np

from app.api.app import create_app
from app.metrics import engine
from app.metrics.collection import build_collection
from app.metrics.registry import REGISTRY
from app.service import Sessions
from app.settings import Settings
from app.store.memory import MemoryStore

THRESHOLDS_9 = [round(0.1 * i, 1) for i in range(1, 10)]
COLLECTIONS: dict[str, list[dict[str, Any]]] = {
    "Precision, Recall, AUC, F1Score": [
        {"metric": "Precision"}, {"metric": "Recall"}, {"metric": "AUC"},
        {"metric": "F1Score", "config": {"threshold": 0.5}}],
    "Precision, Recall (9 thresholds)": [
        {"metric": "Precision", "config": {"thresholds": THRESHOLDS_9}},
        {"metric": "Recall", "config": {"thresholds": THRESHOLDS_9}}],
    "TP, FP, TN, FN, Precision, Recall": [
        {"metric": m} for m in ("TruePositives", "FalsePositives", "TrueNegatives",
                                "FalseNegatives", "Precision", "Recall")],
    "AUC ROC, AUC PR": [
        {"metric": "AUC"}, {"metric": "AUC", "config": {"curve": "PR", "name": "pr_auc"}}],
    "4 x *At* (200 thresholds)": [
        {"metric": "PrecisionAtRecall", "config": {"recall": 0.8}},
        {"metric": "RecallAtPrecision", "config": {"precision": 0.8}},
        {"metric": "SensitivityAtSpecificity", "config": {"specificity": 0.5}},
        {"metric": "SpecificityAtSensitivity", "config": {"sensitivity": 0.5}}],
}


def fields(delta: engine.Contribution) -> int:
    return len(delta.sums) + len(delta.maxes) + len(delta.mins)


def stored_elements(metric: Any) -> int:
    return sum(math.prod(v.shape) for v in metric.stored_variables)


def service_time(members: list[dict[str, Any]], batch: dict[str, np.ndarray], updates: int,
                 as_collection: bool) -> float:
    """Seconds for `updates` batches posted to one collection session, or to one session per
    member (every batch to each), through the service on a fresh memory store."""
    async def run() -> float:
        sessions = Sessions(MemoryStore())
        if as_collection:
            await sessions.create("c", None, None, None, members=members)
            names = ["c"]
        else:
            names = [f"m{i}" for i in range(len(members))]
            for name, m in zip(names, members, strict=True):
                await sessions.create(name, m["metric"], m.get("config"), None)
        began = time.process_time()
        for _ in range(updates):
            for name in names:
                await sessions.update(name, batch, None, None, None)
        return time.process_time() - began

    return asyncio.run(run())


def http_time(members: list[dict[str, Any]], body: dict[str, Any], updates: int,
              as_collection: bool) -> float:
    """CPU seconds for `updates` batches POSTed as JSON to the in-process app (memory store):
    to one collection session, or to one session per member."""
    async def run() -> float:
        app = create_app(Settings())
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=transport, base_url="http://bench") as client:
            if as_collection:
                await client.put("/v1/sessions/c", json={"metrics": members})
                names = ["c"]
            else:
                names = [f"m{i}" for i in range(len(members))]
                for name, m in zip(names, members, strict=True):
                    await client.put(f"/v1/sessions/{name}", json=m)
            began = time.process_time()
            for _ in range(updates):
                for name in names:
                    answer = await client.post(f"/v1/sessions/{name}/update", json=body)
                    assert answer.status_code == 200, answer.text
            return time.process_time() - began

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    batch = {"y_true": rng.integers(0, 2, (args.samples, 1)).astype(np.float32),
             "y_pred": rng.uniform(size=(args.samples, 1)).astype(np.float32)}
    print(f"one batch of {args.samples} binary predictions; {args.updates} updates per timing, "
          f"best of {args.repeat}")
    body = {k: v.tolist() for k, v in batch.items()}
    print(f"{'collection':<36} {'fields/update':>21} {'stored elements':>17} "
          f"{'CPU: collection / separate':>27}")
    print(f"{'':<36} {'groups':>10} {'none':>10} {'groups':>8} {'none':>8} {'service':>8} "
          f"{'HTTP':>8}")
    for label, members in COLLECTIONS.items():
        grouped = build_collection(REGISTRY, {"metrics": members})
        ungrouped = build_collection(REGISTRY, {"metrics": members, "shared": []})
        with_groups = fields(engine.contribution(grouped, batch, None))
        without = fields(engine.contribution(ungrouped, batch, None))
        together, apart, http_together, http_apart = (math.inf,) * 4
        for _ in range(args.repeat):  # alternating, so both see the same machine load
            together = min(together, service_time(members, batch, args.updates, True))
            apart = min(apart, service_time(members, batch, args.updates, False))
            http_together = min(http_together, http_time(members, body, args.updates, True))
            http_apart = min(http_apart, http_time(members, body, args.updates, False))
        print(f"{label:<36} {with_groups:>10} {without:>10} {stored_elements(grouped):>8} "
              f"{stored_elements(ungrouped):>8} {together / apart:>8.2f} "
              f"{http_together / http_apart:>8.2f}")


if __name__ == "__main__":
    main()
