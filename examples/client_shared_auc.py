"""Several processes, one shared AUC.

Each worker process updates the same Tally session with the batches of its own shard of the
data; the session's one number is the AUC over the whole data set, exactly what a single
`keras.metrics.AUC` would give had it seen every batch.

    make run                                    # a Tally server on http://127.0.0.1:8000
    .venv/bin/pip install -e clients/python
    .venv/bin/python examples/client_shared_auc.py --url http://127.0.0.1:8000 --workers 4

Prints one JSON line: {"session", "workers", "samples", "result"}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing

import numpy as np
from tally_client import NotFound, RemoteMetric, TallyClient

METRIC, CONFIG = "AUC", {"num_thresholds": 200}


def make_data(seed: int = 0, samples: int = 6000) -> tuple[np.ndarray, ...]:
    """Labels, scores that are better than chance, and sample weights."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, samples)
    y_pred = np.clip(0.35 * y_true + 0.65 * rng.random(samples), 0, 1).astype(np.float32)
    weights = rng.random(samples).astype(np.float32)
    return y_true, y_pred, weights


def worker(url: str, session: str, index: int, workers: int, batch_size: int,
           background: bool) -> None:
    """Update the shared metric with every `workers`-th sample starting at `index`."""
    y_true, y_pred, weights = (a[index::workers] for a in make_data())
    with RemoteMetric(session, METRIC, CONFIG, url=url, background=background) as auc:
        for start in range(0, len(y_true), batch_size):
            batch = slice(start, start + batch_size)
            auc.update_state(y_true[batch], y_pred[batch], sample_weight=weights[batch])
        # leaving the block flushes (background mode) and closes the connection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--session", default="examples.shared.auc")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--background", action="store_true",
                        help="send updates from a background thread in each worker")
    args = parser.parse_args()

    # start from an empty session
    with TallyClient(args.url) as client, contextlib.suppress(NotFound):
        client.delete(args.session)

    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=worker, args=(args.url, args.session, i, args.workers,
                                                      args.batch_size, args.background))
                 for i in range(args.workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise SystemExit(f"{len(failed)} worker(s) failed: exit codes {failed}")

    with RemoteMetric(args.session, METRIC, CONFIG, url=args.url) as auc:
        print(json.dumps({"session": args.session, "workers": args.workers,
                          "samples": len(make_data()[0]), "result": auc.result()}))


if __name__ == "__main__":
    main()
