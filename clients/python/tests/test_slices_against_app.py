"""Slices against the service itself (shared/API.md "Slices"), Keras as the oracle: for each
slice value a Keras metric fed exactly the samples of that slice, beside one fed every sample.
The sync client and RemoteMetric on a real uvicorn server (JSON and .npz batches), the async
client on the in-process app for the contract's edges (limits, errors, merge, reset, replay)."""

from __future__ import annotations

from typing import Any

import httpx
import keras
import numpy as np
import pytest

from tally_client import (
    AsyncTallyClient,
    Conflict,
    InvalidInput,
    NotFound,
    RemoteMetric,
    TallyClient,
)
from tally_client.remote import keras_result

RTOL = 1e-5
ATOL = 1e-5  # float32 sums, as in test_keras_parity


@pytest.fixture(autouse=True)
def fresh_keras_names():
    keras.backend.clear_session()


class SliceOracle:
    """Keras metrics per slice value (keyed as the service keys them: the decimal string of
    an integer) and one over every sample."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.overall = make()
        self.slices: dict[str, Any] = {}

    def _slice(self, value: Any) -> Any:
        key = str(value)
        if key not in self.slices:
            self.slices[key] = self.make()
        return self.slices[key]

    def update(self, *inputs: Any, sample_weight: Any = None, slice: Any = None,
               slices: Any = None) -> None:
        self.overall.update_state(*inputs, sample_weight=sample_weight)
        if slice is not None:
            self._slice(slice).update_state(*inputs, sample_weight=sample_weight)
        if slices is None:
            return
        labels = np.array([str(v) for v in np.asarray(slices, dtype=object).tolist()])
        for value in dict.fromkeys(labels.tolist()):  # first-seen order
            chosen = labels == value
            weight = None if sample_weight is None else np.asarray(sample_weight)[chosen]
            self._slice(value).update_state(*(np.asarray(a)[chosen] for a in inputs),
                                            sample_weight=weight)


def assert_close(got: Any, expected: Any, what: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), what
        for key in expected:
            assert_close(got[key], expected[key], f"{what}[{key}]")
        return
    value = got if isinstance(got, np.ndarray) else keras_result(got)  # JSON null: NaN
    np.testing.assert_allclose(np.asarray(value, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64),
                               rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=what)


def keras_results(metric: Any) -> Any:
    return np.asarray(metric.result())


def binary(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    return rng.integers(0, 2, n), rng.random(n).astype(np.float32), rng.random(n)


def sparse(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    return rng.integers(0, 4, n), rng.random((n, 4)).astype(np.float32), rng.random(n)


def regression(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    return rng.normal(size=(n, 2)), rng.normal(size=(n, 2)), rng.random(n)


CASES = [
    ("AUC", {"num_thresholds": 50}, binary),
    ("Precision", {"thresholds": [0.3, 0.7]}, binary),  # a tensor result
    ("SparseTopKCategoricalAccuracy", {"k": 2}, sparse),
    ("MeanSquaredError", {}, regression),
]
COUNTRIES = np.array(["fr", "de", "São Paulo", "it", "a b/c?&"])


@pytest.mark.parametrize("npz_threshold", [1_000_000, 50], ids=["json", "npz"])
@pytest.mark.parametrize(("metric", "config", "data"), CASES, ids=[c[0] for c in CASES])
def test_remote_metric_per_slice_matches_keras_over_each_slice(
        server_url, session_name, metric, config, data, npz_threshold):
    rng = np.random.default_rng(17)
    oracle = SliceOracle(lambda: getattr(keras.metrics, metric)(**config))
    client = TallyClient(server_url, npz_threshold=npz_threshold)
    with RemoteMetric(session_name, metric, config, client=client, slices=10) as remote:
        for size in (40, 25, 60):  # strings per sample (unicode, spaces, URL characters)
            y_true, y_pred, weight = data(rng, size)
            labels = COUNTRIES[rng.integers(0, len(COUNTRIES), size)]
            oracle.update(y_true, y_pred, sample_weight=weight, slices=labels)
            remote.update_state(y_true, y_pred, sample_weight=weight, slices=labels)
        y_true, y_pred, weight = data(rng, 30)  # integers: 7 is the slice "7"
        numbers = rng.integers(6, 9, 30)
        oracle.update(y_true, y_pred, sample_weight=weight, slices=numbers)
        remote.update_state(y_true, y_pred, sample_weight=weight, slices=numbers)
        for value in ("7", np.int64(8)):  # one slice for the batch (a 0-d member in npz)
            y_true, y_pred, weight = data(rng, 20)
            oracle.update(y_true, y_pred, sample_weight=weight, slice=value)
            remote.update_state(y_true, y_pred, sample_weight=weight, slice=value)
        y_true, y_pred, weight = data(rng, 9)  # no slice: the overall result only
        oracle.update(y_true, y_pred, sample_weight=weight)
        remote.update_state(y_true, y_pred, sample_weight=weight)

        assert_close(remote.result(), keras_results(oracle.overall), "overall")
        every = remote.slice_results()
        assert set(every) == set(oracle.slices) == {*COUNTRIES, "6", "7", "8"}
        for value, local in oracle.slices.items():
            assert_close(every[value], keras_results(local), f"slices[{value}]")
            assert_close(remote.result(slice=value), keras_results(local), f"slice {value}")
            mine = remote.slice_variables(value)
            assert [v.name for v in mine] == [v.name for v in local.variables]
            for variable, theirs in zip(mine, local.variables, strict=True):
                np.testing.assert_allclose(variable.numpy(), np.asarray(theirs),
                                           rtol=RTOL, atol=ATOL)
        assert_close(remote.result(slice=7), keras_results(oracle.slices["7"]), "slice 7")
        assert remote.document["slices"] == {"max": 10}
    client.close()


def test_a_collection_has_a_result_dict_per_slice(server_url, session_name):
    members = [{"metric": "Precision"}, {"metric": "AUC", "config": {"num_thresholds": 30}}]
    rng = np.random.default_rng(3)
    oracles = {"precision": SliceOracle(keras.metrics.Precision),
               "auc": SliceOracle(lambda: keras.metrics.AUC(num_thresholds=30))}
    with TallyClient(server_url, npz_threshold=200) as tally:
        document = tally.create(session_name, metrics=members, slices=4)
        assert document["slices"] == {"max": 4}
        for size in (30, 300):  # JSON, then npz
            y_true, y_pred, _ = binary(rng, size)
            labels = rng.choice(["eu", "us", "asia"], size)
            tally.update(session_name, y_true, y_pred, slices=labels)
            for oracle in oracles.values():
                oracle.update(y_true, y_pred, slices=labels)
        answer = tally.slices(session_name)
        assert answer["name"] == session_name and answer["epoch"] == 0
        assert set(answer["slices"]) == {"eu", "us", "asia"}
        for value in ("eu", "us", "asia"):
            expected = {member: keras_results(o.slices[value]) for member, o in oracles.items()}
            assert_close(answer["slices"][value], expected, f"/slices {value}")
            one = tally.result(session_name, slice=value)
            assert (one["name"], one["epoch"], one["slice"]) == (session_name, 0, value)
            assert_close(one["result"], expected, f"?slice={value}")
        assert_close(tally.result(session_name)["result"],
                     {m: keras_results(o.overall) for m, o in oracles.items()}, "overall")


@pytest.fixture
async def app_transport():
    from app.api.app import create_app
    from app.store.memory import MemoryStore

    app = create_app(store=MemoryStore())
    async with app.router.lifespan_context(app):
        yield httpx.ASGITransport(app=app)


@pytest.fixture
async def app_client(app_transport):
    async with AsyncTallyClient("http://tally", transport=app_transport) as client:
        yield client


async def test_the_limit_errors_and_identity_through_the_async_client(app_client,
                                                                      app_transport):
    created = await app_client.create("s", "AUC", {"num_thresholds": 20}, slices=2)
    assert created["slices"] == {"max": 2}
    assert await app_client.create("s", "AUC", {"num_thresholds": 20}, slices=2) == created
    with pytest.raises(Conflict):
        await app_client.create("s", "AUC", {"num_thresholds": 20}, slices=3)
    with pytest.raises(Conflict):
        await app_client.create("s", "AUC", {"num_thresholds": 20})

    oracle = SliceOracle(lambda: keras.metrics.AUC(num_thresholds=20))
    y_true, y_pred, _ = binary(np.random.default_rng(1), 20)
    labels = np.where(np.arange(20) % 3 == 0, "a", "b")
    await app_client.update("s", y_true, y_pred, slices=labels)
    oracle.update(y_true, y_pred, slices=labels)
    before = await app_client.slices("s")

    with pytest.raises(InvalidInput):  # a third distinct value: refused, nothing applied
        await app_client.update("s", [1, 0], [0.9, 0.1], slices=["a", "c"])
    with pytest.raises(InvalidInput):
        await app_client.update("s", [1], [0.9], slice="c")
    assert await app_client.slices("s") == before
    assert_close((await app_client.result("s"))["result"], keras_results(oracle.overall),
                 "overall after refused batches")

    with pytest.raises(NotFound):
        await app_client.result("s", slice="c")
    with pytest.raises(InvalidInput):
        await app_client.update("s", [1, 0], [0.9, 0.1], slices=["a"])  # one value, 2 samples
    with pytest.raises(InvalidInput):
        await app_client.update("s", [1], [0.9], slice="x" * 129)
    with pytest.raises(InvalidInput):
        await app_client.update("s", [1], [0.9], slice="a\nb")
    with pytest.raises(InvalidInput):
        await app_client.result("s", slice="a", window=60)

    with pytest.raises(InvalidInput):
        await app_client.update("s", [1], [0.9], slice="")
    for odd in (np.array([0.5, 1.5]), np.array([True, False])):  # not kind i, u or U
        with pytest.raises(InvalidInput):
            await app_client.update("s", [1, 0], [0.9, 0.1], slices=odd)
    # the same refusals when the values come in an .npz
    async with AsyncTallyClient("http://tally", transport=app_transport,
                                npz_threshold=1) as big:
        with pytest.raises(InvalidInput):
            await big.update("s", [1, 0], [0.9, 0.1], slices=np.array([0.5, 1.5]))
        with pytest.raises(InvalidInput):
            await big.update("s", [1, 0], [0.9, 0.1], slices=["a", "c"])
    assert await app_client.slices("s") == before

    closed = await app_client.reset("s")  # the limit is per epoch: reset frees the values
    assert set(closed["closed"]["slices"]) == {"a", "b"}
    await app_client.update("s", [1, 0], [0.9, 0.1], slices=["c", "d"])
    assert set((await app_client.slices("s"))["slices"]) == {"c", "d"}

    with pytest.raises(InvalidInput):  # more than TALLY_MAX_SLICES (default 1000)
        await app_client.create("many", "Mean", slices=1001)
    with pytest.raises(InvalidInput):  # (M + 1) x 4 x 300 state elements > 1048576
        await app_client.create("large", "AUC", {"num_thresholds": 300}, slices=1000)
    assert (await app_client.create("fits", "AUC", {"num_thresholds": 300},
                                    slices=800))["slices"] == {"max": 800}

    windowed = await app_client.create("w", "Sum", slices=3,
                                       window={"bucket_seconds": 60, "buckets": 2})
    assert windowed["slices"] == {"max": 3} and windowed["window"]["buckets"] == 2
    values, labels = np.array([1.0, 2.0, 4.0]), np.array(["a", "b", "a"])
    await app_client.update("w", values=values, slices=labels)
    assert (await app_client.result("w", window=60))["result"] == values.sum()
    assert (await app_client.result("w", slice="a"))["result"] == values[labels == "a"].sum()
    both = await app_client.result("w", slice="a", window=60)  # the slice over the window
    assert (both["window_seconds"], both["result"]) == (60, values[labels == "a"].sum())
    windowed_slices = await app_client.slices("w", window=60)
    assert windowed_slices["slices"] == {"a": values[labels == "a"].sum(),
                                         "b": values[labels == "b"].sum()}

    await app_client.create("plain", "AUC")
    with pytest.raises(InvalidInput):
        await app_client.update("plain", [1], [0.5], slice="a")
    with pytest.raises(InvalidInput):
        await app_client.result("plain", slice="a")
    with pytest.raises(InvalidInput):
        await app_client.slices("plain")
    assert (await app_client.get("plain"))["slices"] is None


async def test_merge_replay_and_reset_of_slices_through_the_async_client(app_client):
    await app_client.create("m", "AUC", {"num_thresholds": 25}, slices=5)
    oracle = SliceOracle(lambda: keras.metrics.AUC(num_thresholds=25))
    rng = np.random.default_rng(2)
    y_true, y_pred, weight = binary(rng, 40)
    labels = rng.integers(1, 4, 40)  # integers; read back as "1", "2", "3"
    for _ in range(2):  # the same key twice: applied once, in every slice
        await app_client.update("m", y_true, y_pred, weight, slices=labels,
                                idempotency_key="batch-1")
    oracle.update(y_true, y_pred, sample_weight=weight, slices=labels)

    shard = keras.metrics.AUC(num_thresholds=25)  # merged into slice 2 and the overall
    extra = binary(rng, 15)
    shard.update_state(extra[0], extra[1], sample_weight=extra[2])
    await app_client.merge("m", {v.name: np.asarray(v) for v in shard.variables}, slice=2)
    oracle.update(extra[0], extra[1], sample_weight=extra[2], slice=2)

    expected = {value: keras_results(local) for value, local in oracle.slices.items()}
    assert set(expected) == {"1", "2", "3"}
    answer = await app_client.slices("m")
    assert_close(answer["slices"], expected, "/slices")
    assert_close((await app_client.result("m", slice="2"))["result"], expected["2"], "2")
    one = await app_client.variables("m", slice=2)
    assert one["slice"] == "2"
    for variable, theirs in zip(one["variables"], oracle.slices["2"].variables, strict=True):
        assert variable["name"] == theirs.name
        np.testing.assert_allclose(variable["value"], np.asarray(theirs), rtol=RTOL, atol=ATOL)
    overall = keras_results(oracle.overall)
    assert_close((await app_client.result("m"))["result"], overall, "overall")

    closed = await app_client.reset("m", epoch=0)
    assert closed["epoch"] == 1
    (entry,) = (await app_client.history("m"))["epochs"]
    assert entry["epoch"] == 0
    assert_close(entry["result"], overall, "history result")
    assert_close(entry["slices"], expected, "history slices")
    assert (await app_client.slices("m"))["slices"] == {}
    with pytest.raises(NotFound):
        await app_client.result("m", slice="1")
