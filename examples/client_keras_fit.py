"""A Keras `model.fit` whose validation AUC is a shared Tally session.

`TallyCallback` predicts this worker's validation data at each epoch end, updates the shared
`RemoteMetric`, closes the session's epoch (once, however many workers do the same) and puts
the closed epoch's result into `logs`, hence into `History` and every later callback.

    make run                                    # a Tally server on http://127.0.0.1:8000
    .venv/bin/pip install -e clients/python
    KERAS_BACKEND=jax .venv/bin/python examples/client_keras_fit.py --url http://127.0.0.1:8000

(Keras' numpy backend cannot train; jax, tensorflow or torch can.) Prints one JSON line:
{"session", "shared": [val AUC per epoch from the logs], "local": [the same from a local
keras.metrics.AUC on the same predictions, for comparison]}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from tally_client import NotFound, RemoteMetric, TallyClient  # noqa: E402
from tally_client.keras import TallyCallback  # noqa: E402


def make_data(seed: int = 0, samples: int = 1200) -> tuple[np.ndarray, np.ndarray]:
    """A linearly separable problem with label noise: 8 features, binary labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, 8)).astype(np.float32)
    w = rng.normal(size=(8,))
    y = ((x @ w + rng.normal(scale=1.0, size=samples)) > 0).astype(np.float32)
    return x, y


class LocalAUC(keras.callbacks.Callback):
    """The oracle: a local Keras AUC on the same validation predictions at each epoch end."""

    def __init__(self, validation_data: tuple[np.ndarray, np.ndarray]) -> None:
        super().__init__()
        self.validation_data = validation_data
        self.values: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        x, y = self.validation_data
        auc = keras.metrics.AUC(num_thresholds=200)
        auc.update_state(y, self.model.predict(x, verbose=0))
        self.values.append(float(auc.result()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--session", default="examples.fit.val.auc")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    # start from an empty session
    with TallyClient(args.url) as client, contextlib.suppress(NotFound):
        client.delete(args.session)

    x, y = make_data()
    x_train, y_train, x_val, y_val = x[:1000], y[:1000], x[1000:], y[1000:]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")

    shared_auc = RemoteMetric(args.session, "AUC", {"num_thresholds": 200}, url=args.url)
    local = LocalAUC((x_val, y_val))
    history = model.fit(
        x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0,
        callbacks=[TallyCallback({"val_shared_auc": shared_auc},
                                 validation_data=(x_val, y_val)), local])
    shared_auc.close()
    print(json.dumps({"session": args.session, "shared": history.history["val_shared_auc"],
                      "local": local.values}))


if __name__ == "__main__":
    main()
