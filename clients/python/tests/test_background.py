"""RemoteMetric(background=True): never blocks on the network, never raises; the full-queue
policy; flush; result after flush. Against a fake service whose updates can be held."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from scripted import problem

from tally_client import QueueFull, RemoteMetric, RetryPolicy, Unavailable

WAIT = 30  # seconds: a bound on waits that should end at once (never a timing assertion)


class FakeSum:
    """A `Sum` session: updates add `values`; `hold` keeps update answers waiting."""

    def __init__(self) -> None:
        self.total = 0.0
        self.updates: list[float] = []
        self.log: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Semaphore(0)
        self.fail_next = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.log.append(f"{request.method} {path}")
        if request.method == "PUT":
            return httpx.Response(201, json={"name": "s", "metric": "Sum", "epoch": 0})
        if path == "/v1/metrics":
            return httpx.Response(200, json={"metrics": [{"name": "Sum", "inputs": ["values"]}]})
        if path.endswith("/update"):
            self.entered.release()
            assert self.hold.wait(WAIT)
            if self.fail_next:
                self.fail_next -= 1
                return problem(503)
            value = json.loads(request.content)["values"]
            self.updates.append(value)
            self.total += value
            return httpx.Response(200, json={"epoch": 0, "samples": 1})
        if path.endswith("/result"):
            return httpx.Response(200, json={"name": "s", "epoch": 0, "result": self.total})
        return problem(404)


def background_metric(service: FakeSum, **options) -> RemoteMetric:
    return RemoteMetric("s", "Sum", url="http://tally", transport=httpx.MockTransport(service),
                        background=True, retries=RetryPolicy(attempts=1), **options)


def test_updates_return_while_the_service_holds_them_and_flush_waits():
    service = FakeSum()
    service.hold.clear()
    metric = background_metric(service)
    for value in (1.0, 2.0, 3.0):
        metric.update_state(value)  # returns although no update has been answered
    assert service.entered.acquire(timeout=WAIT)
    assert metric.flush(timeout=0.05) is False and service.updates == []
    service.hold.set()
    assert metric.flush(timeout=WAIT)
    assert service.updates == [1.0, 2.0, 3.0]  # in order
    metric.close()


def test_result_flushes_first():
    service = FakeSum()
    metric = background_metric(service)
    for value in range(5):
        metric.update_state(float(value))
    assert metric.result() == 10.0
    assert service.log[-1].endswith("/result")
    assert sum(entry.endswith("/update") for entry in service.log) == 5
    metric.close()


def test_a_full_queue_drops_the_new_batch_counts_it_and_reports_it():
    service = FakeSum()
    service.hold.clear()
    errors: list[tuple[BaseException, str]] = []
    metric = background_metric(service, queue_size=2, block_seconds=0,
                               on_error=lambda e, what: errors.append((e, what)))
    metric.update_state(1.0)
    assert service.entered.acquire(timeout=WAIT)  # batch 1 is in flight, the queue is empty
    for value in (2.0, 3.0, 4.0, 5.0):  # 2 and 3 fill the queue; 4 and 5 are dropped
        metric.update_state(value)
    assert metric.dropped == 2
    assert [type(e) for e, _ in errors] == [QueueFull, QueueFull]
    service.hold.set()
    assert metric.flush(timeout=WAIT)
    assert service.updates == [1.0, 2.0, 3.0]
    metric.close()


def test_a_full_queue_waits_block_seconds_for_room_before_dropping():
    service = FakeSum()
    service.hold.clear()
    metric = background_metric(service, queue_size=1, block_seconds=WAIT)
    metric.update_state(1.0)
    assert service.entered.acquire(timeout=WAIT)
    metric.update_state(2.0)  # fills the queue
    released = threading.Timer(0.2, service.hold.set)
    released.start()
    metric.update_state(3.0)  # waits until the sender takes batch 2, then is queued
    assert metric.flush(timeout=WAIT)
    assert metric.dropped == 0 and service.updates == [1.0, 2.0, 3.0]
    metric.close()


def test_failures_go_to_on_error_and_the_loop_goes_on():
    service = FakeSum()
    service.fail_next = 1
    errors: list[tuple[BaseException, str]] = []
    metric = background_metric(service, on_error=lambda e, what: errors.append((e, what)))
    metric.update_state(1.0)  # fails (503, no retries in this test)
    metric.update_state(2.0)
    assert metric.flush(timeout=WAIT)
    assert [type(e) for e, _ in errors] == [Unavailable]
    assert errors[0][1] == "update of s"
    assert metric.failed == 1 and service.updates == [2.0]
    metric.close()


def test_a_broken_on_error_callback_does_not_stop_the_sender():
    service = FakeSum()
    service.fail_next = 1

    def broken(error: BaseException, what: str) -> None:
        raise RuntimeError("callback bug")

    metric = background_metric(service, on_error=broken)
    metric.update_state(1.0)
    metric.update_state(2.0)
    assert metric.flush(timeout=WAIT) and service.updates == [2.0]
    metric.close()


def test_bad_arguments_in_background_are_reported_not_raised():
    service = FakeSum()
    errors: list[BaseException] = []
    metric = background_metric(service, on_error=lambda e, what: errors.append(e))
    metric.update_state(1.0, 1.0, 1.0)  # Sum takes (values, sample_weight)
    assert metric.flush(timeout=WAIT)
    assert len(errors) == 1 and isinstance(errors[0], TypeError)
    metric.close()


def test_inputs_that_do_not_convert_are_reported_not_raised():
    service = FakeSum()
    errors: list[BaseException] = []
    metric = background_metric(service, on_error=lambda e, what: errors.append(e))
    metric.update_state([[1.0, 2.0], [3.0]])  # ragged: numpy refuses it
    metric.update_state(1.0, 1.0, 1.0, 1.0)  # too many inputs for any metric
    assert metric.flush(timeout=WAIT)
    assert [type(e) for e in errors] == [ValueError, TypeError]
    assert metric.failed == 2 and service.updates == []
    metric.close()


def test_close_flushes_and_a_closed_metric_drops_with_a_report():
    service = FakeSum()
    errors: list[BaseException] = []
    metric = background_metric(service, on_error=lambda e, what: errors.append(e))
    metric.update_state(4.0)
    metric.close()
    assert service.updates == [4.0]
    metric.update_state(5.0)
    assert metric.dropped == 1 and isinstance(errors[0], QueueFull)


def test_inputs_are_copied_when_queued():
    import numpy as np

    service = FakeSum()
    service.hold.clear()
    metric = background_metric(service)
    buffer = np.array(1.0)
    metric.update_state(buffer)
    buffer[...] = 100.0  # the training loop reuses its buffer
    service.hold.set()
    assert metric.flush(timeout=WAIT) and service.updates == [1.0]
    metric.close()


@pytest.mark.parametrize("capacity", [0, -1])
def test_the_queue_needs_room_for_one_batch(capacity):
    with pytest.raises(ValueError):
        background_metric(FakeSum(), queue_size=capacity)
