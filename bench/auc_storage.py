"""What an AUC update costs: engine time and fields written, against baselines in the same run.

    python -m bench.auc_storage [--samples 100000] [--repeat 5]

For AUC with 200, 1000 and 10000 thresholds on one batch: the time to compute the batch's
contribution as a ratio to a single-threshold `Precision` on the same batch, and
the number of state fields the batch writes against the 4 x num_thresholds a dense update would.
Two prediction mixes: continuous scores (every bucket touched) and 5 distinct scores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from app.metrics import engine
from app.metrics.registry import REGISTRY


def best_of(repeat: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.samples
    y_true = rng.integers(0, 2, n).astype(np.float32)
    mixes = {"continuous": rng.uniform(size=n).astype(np.float32),
             "5 distinct": rng.choice(np.array([0.12, 0.34, 0.56, 0.78, 0.9], np.float32), n)}
    _, precision = REGISTRY.build("Precision", {})
    plain = {"y_true": y_true, "y_pred": mixes["continuous"]}
    baseline = best_of(args.repeat, lambda: engine.contribution(precision, plain, None))
    print(f"{n} samples per batch; baseline Precision() contribution {baseline * 1e3:.2f} ms")
    print(f"{'thresholds':>10} {'predictions':>12} {'time ratio':>11} {'fields':>8} "
          f"{'dense':>7}")
    for thresholds in (200, 1000, 10000):
        _, auc = REGISTRY.build("AUC", {"num_thresholds": thresholds})
        for label, y_pred in mixes.items():
            inputs = {"y_true": y_true, "y_pred": y_pred}
            elapsed = best_of(args.repeat, lambda: engine.contribution(auc, inputs, None))  # noqa: B023
            fields = len(engine.contribution(auc, inputs, None).sums)
            print(f"{thresholds:>10} {label:>12} {elapsed / baseline:>11.1f} {fields:>8} "
                  f"{4 * thresholds:>7}")


if __name__ == "__main__":
    main()
