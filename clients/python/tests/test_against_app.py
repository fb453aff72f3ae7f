"""Every endpoint against the service itself: the async client on the in-process app
(ASGITransport, lifespan run by hand), the sync client on a real uvicorn server."""

from __future__ import annotations

import httpx
import keras
import numpy as np
import pytest

from tally_client import (
    AsyncTallyClient,
    Conflict,
    InvalidInput,
    NotFound,
    TallyClient,
)


@pytest.fixture
async def app_client():
    from app.api.app import create_app
    from app.store.memory import MemoryStore

    app = create_app(store=MemoryStore())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncTallyClient("http://tally", transport=transport) as client:
            yield client


async def test_a_session_lifecycle_through_the_async_client(app_client):
    created = await app_client.create("run1.loss", "Mean", {"name": "loss"})
    assert created["metric"] == "Mean" and created["epoch"] == 0
    assert await app_client.create("run1.loss", "mean", {"name": "loss"}) == created
    applied = await app_client.update("run1.loss", values=[1.0, 3.0, 5.0, 7.0],
                                      sample_weight=[1, 1, 0, 0])
    assert applied == {"epoch": 0, "samples": 4}
    assert (await app_client.result("run1.loss"))["result"] == 2.0
    assert (await app_client.get("run1.loss"))["result"] == 2.0
    variables = (await app_client.variables("run1.loss"))["variables"]
    assert [(v["name"], v["value"]) for v in variables] == [("total", 4.0), ("count", 2.0)]
    assert await app_client.config("run1.loss") == {"name": "loss", "dtype": "float32"}
    merged = await app_client.merge("run1.loss", {"total": 6.0, "count": 1.0})
    assert merged["epoch"] == 0
    assert (await app_client.result("run1.loss"))["result"] == pytest.approx(10 / 3)
    closed = await app_client.reset("run1.loss", epoch=0)
    assert closed["epoch"] == 1 and closed["closed"]["epoch"] == 0
    with pytest.raises(Conflict) as late:
        await app_client.reset("run1.loss", epoch=0)
    assert late.value.current_epoch == 1
    history = (await app_client.history("run1.loss"))["epochs"]
    assert [(h["epoch"], h["result"]) for h in history] == [(0, pytest.approx(10 / 3))]
    await app_client.delete("run1.loss")
    with pytest.raises(NotFound):
        await app_client.get("run1.loss")


async def test_listing_catalogue_and_probes_through_the_async_client(app_client):
    for name in ("b.x", "a.x", "c.y"):
        await app_client.create(name, "Sum")
    names = [s["name"] async for s in app_client.iter_sessions(page_size=2)]
    assert names == ["a.x", "b.x", "c.y"]
    page = await app_client.list_sessions("b")
    assert [s["name"] for s in page["sessions"]] == ["b.x"]
    catalogue = {m["name"]: m for m in (await app_client.catalogue())["metrics"]}
    assert catalogue["Mean"]["inputs"] == ["values"]
    assert catalogue["AUC"]["inputs"] == ["y_true", "y_pred"]
    assert (await app_client.health())["status"] == "ok"
    assert await app_client.ready() is True


async def test_service_errors_arrive_typed_with_their_detail(app_client):
    await app_client.create("s", "Precision")
    with pytest.raises(InvalidInput) as shapes:
        await app_client.update("s", [0, 1, 1], [0.5, 0.5])
    assert "shape" in shapes.value.detail
    with pytest.raises(NotFound):
        await app_client.create("t", "NoSuchMetric")
    with pytest.raises(Conflict):
        await app_client.create("s", "Recall")


async def test_a_replayed_key_is_applied_once(app_client):
    await app_client.create("s", "Sum")
    await app_client.update("s", values=[2.0], idempotency_key="k1")
    await app_client.update("s", values=[2.0], idempotency_key="k1")
    assert (await app_client.result("s"))["result"] == 2.0


def test_the_sync_client_over_real_http_with_an_npz_batch(server_url, session_name):
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, 5000)
    y_pred = rng.random(5000).astype(np.float32)
    with TallyClient(server_url, npz_threshold=1000) as client:
        client.create(session_name, "Precision", {"thresholds": 0.5})
        assert client.update(session_name, y_true, y_pred) == {"epoch": 0, "samples": 5000}
        keras_precision = keras.metrics.Precision(thresholds=0.5)
        keras_precision.update_state(y_true, y_pred)
        expected = float(keras_precision.result())
        assert client.result(session_name)["result"] == pytest.approx(expected, rel=1e-5)
        assert session_name in [s["name"] for s in client.iter_sessions(session_name)]
        assert client.ready() is True
