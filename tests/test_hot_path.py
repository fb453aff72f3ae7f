"""The small-batch update's shortcuts (issue 7) give the same increments as the general path."""

from __future__ import annotations

import httpx
import numpy as np
from fastapi.testclient import TestClient
from starlette.responses import Response

from app.api import sessions
from app.api.app import create_app
from app.api.direct import DirectDispatch
from app.metrics import engine
from app.metrics.registry import REGISTRY
from app.settings import Settings
from app.store.base import Batch
from app.store.memory import MemoryStore
from app.store.redis import RUN, _encode_runs
from app.store.state import Runs, State, expand


def test_adjacent_whole_variables_travel_as_one_run():
    collector = engine._RunsCollector()  # noqa: SLF001 - the unit under test
    collector.whole("sum", 0, np.array([1.0, 2.0]))
    collector.whole("sum", 2, np.array([3.0]))
    collector.whole("sum", 5, np.array([4.0]))  # a gap: a run of its own
    runs = collector.build("sum")
    assert runs.starts.tolist() == [0, 5]
    assert runs.counts.tolist() == [3, 1]
    assert runs.values.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_a_precision_batch_is_one_run_of_both_counts():
    _, metric = REGISTRY.build("Precision", {})
    delta = engine.contribution(metric, {"y_true": np.array([1.0, 0.0, 0.0], np.float32),
                                         "y_pred": np.array([0.9, 0.8, 0.1], np.float32)},
                                None)
    assert len(delta.sum_runs) == 1
    assert delta.sums == {"true_positives:0": 1.0, "false_positives:0": 1.0}


def test_expand_one_run_and_many_runs():
    assert expand(np.array([3]), np.array([4])).tolist() == [3, 4, 5, 6]
    assert expand(np.array([0, 5]), np.array([2, 1])).tolist() == [0, 1, 5]
    state = State()
    state.add(Runs(np.array([2]), np.array([2]), np.array([1.0, 2.0])))
    assert state.sums.tolist() == [0.0, 0.0, 1.0, 2.0]


def test_one_run_of_sums_is_encoded_as_the_general_path_encodes_it():
    one = Batch(Runs(np.array([7]), np.array([2]), np.array([3.0, 5.0])), samples=4)
    heads = np.zeros(1, RUN)
    heads["kind"], heads["start"], heads["count"] = 0, 7, 2
    assert _encode_runs(one) == (heads.tobytes(), np.array([3.0, 5.0], "<f8").tobytes(), 1)
    two = Batch(Runs(np.array([7]), np.array([1]), np.array([3.0])),
                maxes=Runs(np.array([0]), np.array([1]), np.array([9.0])), samples=1)
    heads = np.zeros(2, RUN)
    heads["kind"], heads["start"], heads["count"] = [0, 1], [7, 0], [1, 1]
    assert _encode_runs(two) == (heads.tobytes(), np.array([3.0, 9.0], "<f8").tobytes(), 2)


# -- DirectDispatch: the hot routes answered before FastAPI's stack ---------------------------
async def test_hot_routes_skip_the_router_and_the_rest_reach_it():
    """DirectDispatch answers POST update and GET result itself; every other request goes on
    to the app behind it (another method, a name with '/', an empty name, other routes, a
    deployment under a root_path)."""
    app = create_app(Settings(), store=MemoryStore())
    reached: list[tuple[str, str]] = []

    async def behind(scope, receive, send):
        reached.append((scope["method"], scope["path"]))
        await Response(status_code=299)(scope, receive, send)

    dispatch = DirectDispatch(behind, sessions.router.routes, app.state.http_metrics)

    async def with_app(scope, receive, send):  # what Starlette puts in every scope
        await dispatch({**scope, "app": app}, receive, send)

    async with app.router.lifespan_context(app):
        await app.state.sessions.create("p", "Precision", {}, None)
        transport = httpx.ASGITransport(app=with_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            update = await client.post("/v1/sessions/p/update",
                                       json={"y_true": [1, 0], "y_pred": [0.9, 0.8]})
            assert update.json() == {"epoch": 0, "samples": 2}
            result = await client.get("/v1/sessions/p/result")
            assert result.json()["result"] == 0.5
            missing = await client.get("/v1/sessions/nope/result")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
            assert reached == []
            others = [("HEAD", "/v1/sessions/p/result"), ("GET", "/v1/sessions/p/update"),
                      ("POST", "/v1/sessions/a/b/update"), ("GET", "/v1/sessions/p"),
                      ("POST", "/v1/sessions//update")]
            for method, path in others:
                assert (await client.request(method, path)).status_code == 299
            assert reached == others
            routed = httpx.ASGITransport(app=with_app, root_path="/tally")
            async with httpx.AsyncClient(transport=routed, base_url="http://t") as prefixed:
                await prefixed.get("/tally/v1/sessions/p/result")
            assert reached[-1] == ("GET", "/tally/v1/sessions/p/result")


def test_an_unexpected_error_on_a_hot_route_is_a_500_problem_counted_as_such(monkeypatch):
    """An exception that is not a TallyError leaves DirectDispatch as it leaves the router:
    the server error middleware answers the 500 problem, and /metrics counts it by route."""
    client = TestClient(create_app(Settings(), store=MemoryStore()),
                        raise_server_exceptions=False)
    with client:
        client.put("/v1/sessions/p", json={"metric": "Precision"})

        async def broken(*args, **kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr(client.app.state.sessions, "update", broken)
        answer = client.post("/v1/sessions/p/update", json={"y_true": [1], "y_pred": [0.9]})
        assert answer.status_code == 500
        assert answer.json()["detail"] == "an unexpected error occurred: RuntimeError"
        metrics = client.get("/metrics").text
    assert 'route="/v1/sessions/{name}/update",status="500"' in metrics


def test_the_app_answers_hot_routes_in_front_of_fastapi_and_the_rest_through_it():
    """TallyApp: the hot routes never reach FastAPI's own call (its telemetry check and
    middleware stack); every other request, a deployment under a root_path, and the lifespan
    do, and both kinds are counted in /metrics by route template."""
    app = create_app(Settings(), store=MemoryStore())
    reached: list[str] = []
    build = app.build_middleware_stack

    def spying_stack():
        stack = build()

        async def spy(scope, receive, send):
            reached.append(scope.get("path", scope["type"]))
            await stack(scope, receive, send)

        return spy

    app.build_middleware_stack = spying_stack  # type: ignore[method-assign]
    with TestClient(app) as client:
        client.put("/v1/sessions/p", json={"metric": "Precision"})
        assert client.post("/v1/sessions/p/update",
                           json={"y_true": [1, 0], "y_pred": [0.9, 0.8]}).status_code == 200
        assert client.get("/v1/sessions/p/result").json()["result"] == 0.5
        assert client.get("/v1/sessions/nope/result").status_code == 404
        assert reached == ["lifespan", "/v1/sessions/p"]
        metrics = client.get("/metrics").text
    for line in ('method="POST",route="/v1/sessions/{name}/update",status="200"} 1.0',
                 'method="GET",route="/v1/sessions/{name}/result",status="200"} 1.0',
                 'method="GET",route="/v1/sessions/{name}/result",status="404"} 1.0',
                 'method="PUT",route="/v1/sessions/{name}",status="201"} 1.0'):
        assert line in metrics, line
    with TestClient(app, root_path="/tally") as prefixed:
        assert prefixed.get("/tally/v1/sessions/p/result").status_code == 200
    assert reached[-1] == "/tally/v1/sessions/p/result"


def test_hiredis_packs_an_apply_call_as_redis_py_does():
    """Group commit packs EVALSHA with hiredis (RedisStore._eval_on): the bytes on the wire
    are redis-py's own for the same arguments (a real call's: ints, text, binary blobs)."""
    import hiredis
    from redis.asyncio.connection import Connection

    from app.store import keys
    from app.store.redis import RedisStore, _encode_batches

    store = RedisStore.from_url("redis://127.0.0.1:1/0")
    batches = [Batch(Runs(np.array([0]), np.array([2]), np.array([1.0, 3.0])), samples=4,
                     idempotency_key="k-\u00e9", epoch=3),
               Batch(Runs(np.array([7]), np.array([1]), np.array([-0.0])), samples=1)]
    headers, blobs = _encode_batches(batches)
    name = "run1.val.\u00e9"
    session_keys = keys.session_keys(name)
    args = ("EVALSHA", store._scripts["apply"].sha, len(session_keys),  # noqa: SLF001
            *session_keys, *store._apply_head(name, headers), *blobs)  # noqa: SLF001
    assert hiredis.pack_command(args) == b"".join(Connection().pack_command(*args))
