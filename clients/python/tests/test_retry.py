"""Retries: what is retried, with which key, how often; and the backoff itself."""

from __future__ import annotations

import uuid

import httpx
import pytest
from scripted import Scripted, ok, problem

from tally_client import (
    AsyncTallyClient,
    Conflict,
    ConnectionFailed,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
    RetryPolicy,
    StoreFull,
    TallyClient,
    Unavailable,
)

FAST = RetryPolicy(attempts=4, backoff=0.0)  # retries without sleeping


def client_for(*steps, policy: RetryPolicy = FAST) -> tuple[TallyClient, Scripted]:
    script = Scripted(*steps)
    return TallyClient("http://tally", transport=script.transport(), retries=policy), script


@pytest.mark.parametrize("transient", [
    problem(503), problem(504), httpx.ConnectError("refused"), httpx.ReadTimeout("lost"),
])
def test_an_update_is_retried_with_the_same_idempotency_key(transient):
    client, script = client_for(transient, transient, ok({"epoch": 2, "samples": 3}))
    assert client.update("s", [0, 1, 1], [0.2, 0.7, 0.9]) == {"epoch": 2, "samples": 3}
    keys = script.keys()
    assert len(keys) == 3 and len(set(keys)) == 1
    assert uuid.UUID(keys[0]).version == 4
    assert len({r.content for r in script.requests}) == 1  # the very same request


def test_504_then_success_merges_once_with_one_key():
    client, script = client_for(problem(504), ok({"epoch": 0, "samples": 0}))
    client.merge("s", {"true_positives": [1.0, 2.0]})
    assert len(script.requests) == 2 and len(set(script.keys())) == 1


def test_each_batch_gets_its_own_key_and_a_given_key_is_used():
    client, script = client_for(ok())
    client.update("s", values=[1.0])
    client.update("s", values=[1.0])
    client.update("s", values=[1.0], idempotency_key="batch-17")
    keys = script.keys()
    assert keys[0] != keys[1] and keys[2] == "batch-17"


@pytest.mark.parametrize(("answer", "kind"), [
    (problem(422), InvalidInput), (problem(404), NotFound), (problem(409), Conflict),
    (problem(507), StoreFull),
])
def test_client_errors_and_store_full_are_never_retried(answer, kind):
    client, script = client_for(answer, ok())
    with pytest.raises(kind):
        client.update("s", values=[1.0])
    assert len(script.requests) == 1


def test_attempts_are_bounded():
    client, script = client_for(problem(503), policy=RetryPolicy(attempts=3, backoff=0.0))
    with pytest.raises(Unavailable):
        client.update("s", values=[1.0])
    assert len(script.requests) == 3


def test_no_retry_starts_past_the_total_time():
    # Every delay is 1 s (random() = 1): more than the 0.5 s budget, so no retry at all.
    policy = RetryPolicy(attempts=10, backoff=1.0, total_seconds=0.5, random=lambda: 1.0)
    client, script = client_for(problem(503), ok(), policy=policy)
    with pytest.raises(Unavailable):
        client.update("s", values=[1.0])
    assert len(script.requests) == 1


@pytest.mark.parametrize(("failure", "retried"), [
    (problem(503), True), (httpx.ConnectError("refused"), True),
    (problem(504), False), (httpx.ReadTimeout("lost"), False),
])
def test_reset_without_precondition_is_retried_only_when_nothing_was_applied(failure, retried):
    answer = ok({"epoch": 1, "closed": {"epoch": 0, "result": 0.5}})
    client, script = client_for(failure, answer)
    if retried:
        assert client.reset("s")["epoch"] == 1
    else:
        with pytest.raises((OutcomeUnknown, ConnectionFailed)):
            client.reset("s")
    assert len(script.requests) == (2 if retried else 1)


def test_reset_with_an_epoch_precondition_is_retried_after_an_unknown_outcome():
    client, script = client_for(problem(504), ok({"epoch": 4, "closed": {"epoch": 3,
                                                                          "result": 0.5}}))
    assert client.reset("s", epoch=3)["epoch"] == 4
    assert [r.content for r in script.requests] == [b'{"epoch":3}'] * 2


def test_gets_and_create_are_retried_after_an_unknown_outcome():
    document = {"name": "s", "metric": "AUC", "epoch": 0}
    client, script = client_for(problem(504), httpx.ReadTimeout("lost"), ok(document))
    assert client.create("s", "AUC") == document
    client2, script2 = client_for(httpx.ReadTimeout("lost"), ok({"result": 0.5}))
    assert client2.result("s") == {"result": 0.5}
    assert len(script.requests) == 3 and len(script2.requests) == 2


def test_readiness_is_a_probe_answered_once():
    client, script = client_for(problem(503), httpx.Response(200, json={"status": "ready"}))
    assert client.ready() is False
    assert client.ready() is True
    assert len(script.requests) == 2


async def test_the_async_client_retries_with_the_same_key():
    script = Scripted(problem(504), problem(503), ok({"epoch": 0, "samples": 2}))
    async with AsyncTallyClient("http://tally", transport=script.transport(),
                                retries=FAST) as client:
        assert await client.update("s", [0, 1], [0.3, 0.6]) == {"epoch": 0, "samples": 2}
    assert len(script.requests) == 3 and len(set(script.keys())) == 1


def test_backoff_is_exponential_capped_and_fully_jittered():
    top = RetryPolicy(backoff=0.1, max_backoff=1.0, random=lambda: 1.0)
    assert [top.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    bottom = RetryPolicy(backoff=0.1, random=lambda: 0.0)
    assert bottom.delay(3) == 0.0
    half = RetryPolicy(backoff=0.1, random=lambda: 0.5)
    assert half.delay(2) == pytest.approx(0.1)


def test_retry_after_raises_the_delay_up_to_the_cap():
    policy = RetryPolicy(backoff=0.1, max_backoff=2.0, random=lambda: 0.0)
    assert policy.delay(1, retry_after=1.5) == 1.5
    assert policy.delay(1, retry_after=30) == 2.0


def test_retry_after_header_sets_the_sleep(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr("tally_client.client.time.sleep", slept.append)
    answer = problem(503)
    answer.headers["Retry-After"] = "1.5"
    policy = RetryPolicy(attempts=3, backoff=0.1, max_backoff=5.0, random=lambda: 0.0)
    client, script = client_for(answer, ok(), policy=policy)
    client.update("s", values=[1.0])
    assert slept == [1.5] and len(script.requests) == 2
    with pytest.raises(Unavailable) as caught:
        client_for(answer, policy=RetryPolicy(attempts=1))[0].get("s")
    assert caught.value.retry_after == 1.5


def test_an_integer_is_a_number_of_retries():
    client, script = client_for(problem(503), ok(), policy=RetryPolicy(attempts=1))
    with pytest.raises(Unavailable):
        client.get("s")
    client2 = TallyClient("http://tally", transport=script.transport(), retries=2)
    assert client2.options.retries.attempts == 3
    assert len(script.requests) == 1
