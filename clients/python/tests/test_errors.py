"""Problem answers and connection failures become typed exceptions, mapped in one place."""

from __future__ import annotations

import httpx
import pytest
from scripted import Scripted, problem

from tally_client import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
    PayloadTooLarge,
    StoreFull,
    TallyClient,
    TallyError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)


def client_for(*steps) -> tuple[TallyClient, Scripted]:
    script = Scripted(*steps)
    return TallyClient("http://tally", transport=script.transport(), retries=0), script


@pytest.mark.parametrize(("status", "kind"), [
    (400, BadRequest), (401, Unauthorized), (403, Forbidden), (404, NotFound),
    (409, Conflict), (413, PayloadTooLarge), (415, UnsupportedMediaType),
    (422, InvalidInput), (503, Unavailable), (504, OutcomeUnknown), (507, StoreFull),
    (418, TallyError), (500, TallyError),
])
def test_each_status_has_its_exception_with_the_problem_fields(status, kind):
    client, _ = client_for(problem(status, f"detail of {status}", extra_field=7))
    with pytest.raises(kind) as caught:
        client.get("s")
    error = caught.value
    assert type(error) is kind
    assert (error.status, error.title, error.detail) == (status, f"title {status}",
                                                         f"detail of {status}")
    assert error.body["extra_field"] == 7


def test_conflict_carries_the_current_epoch_when_the_service_gives_it():
    client, _ = client_for(problem(409, "at epoch 4", current_epoch=4), problem(409, "config"))
    with pytest.raises(Conflict) as precondition:
        client.reset("s", epoch=3)
    assert precondition.value.current_epoch == 4
    with pytest.raises(Conflict) as other_config:
        client.create("s", "AUC")
    assert other_config.value.current_epoch is None


def test_input_errors_are_value_errors_and_not_found_a_lookup_error():
    client, _ = client_for(problem(422, "y_pred has shape (3,), expected (4,)"),
                           problem(404, "no session"))
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        client.update("s", [0, 1, 1, 0], [0.1, 0.2, 0.3])
    with pytest.raises(LookupError):
        client.get("s")


def test_an_answer_that_is_not_json_still_gives_a_typed_error():
    page = httpx.Response(502, text="<html>Bad Gateway from the proxy</html>")
    client, _ = client_for(page)
    with pytest.raises(TallyError) as caught:
        client.get("s")
    assert caught.value.status == 502 and "Bad Gateway from the proxy" in caught.value.detail


@pytest.mark.parametrize(("failure", "sent"), [
    (httpx.ConnectError("refused"), False), (httpx.ConnectTimeout("slow"), False),
    (httpx.ReadTimeout("no answer"), True), (httpx.RemoteProtocolError("cut"), True),
])
def test_connection_failures_are_wrapped_and_say_whether_the_request_left(failure, sent):
    client, _ = client_for(failure)
    with pytest.raises(ConnectionFailed) as caught:
        client.get("s")
    assert caught.value.sent is sent and caught.value.status is None
    assert isinstance(caught.value.__cause__, type(failure))
    assert "http://tally/v1/sessions/s" in str(caught.value)


def test_the_token_is_sent_as_a_bearer_header():
    client, script = client_for(httpx.Response(200, json={"status": "ok"}))
    TallyClient("http://tally", "s3cret", transport=script.transport()).health()
    client.health()
    assert script.requests[0].headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in script.requests[1].headers
