"""Request bodies of the benchmarks: binary labels and continuous scores, as JSON or `.npz`.

Fixed seeds, so every run and every server sees the same bytes.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import orjson

JSON = "application/json"
NPZ = "application/x-npz"


def labelled_batch(samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`y_true` in {0, 1} and `y_pred` uniform in [0, 1) (every AUC bucket gets samples)."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, samples).astype(np.float32)
    y_pred = rng.random(samples).astype(np.float32)
    return y_true, y_pred


def json_body(samples: int, seed: int = 0) -> bytes:
    """What a client sends: integer labels, scores with 4 decimals."""
    y_true, y_pred = labelled_batch(samples, seed)
    return orjson.dumps({"y_true": y_true.astype(np.int64).tolist(),
                         "y_pred": np.round(y_pred.astype(np.float64), 4).tolist()})


def npz_body(samples: int, seed: int = 0) -> bytes:
    y_true, y_pred = labelled_batch(samples, seed)
    buffer = io.BytesIO()
    np.savez(buffer, y_true=y_true, y_pred=y_pred)
    return buffer.getvalue()


def body(samples: int, content_type: str, seed: int = 0) -> bytes:
    return json_body(samples, seed) if content_type == JSON else npz_body(samples, seed)


class BodyFiles:
    """Bodies written to a private temporary folder, for wrk's Lua scripts to read."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="tally-bench-bodies-")

    def path(self, samples: int, content_type: str) -> str:
        suffix = "json" if content_type == JSON else "npz"
        path = Path(self._folder.name) / f"batch-{samples}.{suffix}"
        if not path.exists():
            path.write_bytes(body(samples, content_type))
        return str(path)

    def close(self) -> None:
        self._folder.cleanup()
