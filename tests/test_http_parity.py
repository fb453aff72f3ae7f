"""Keras parity through the API for every metric class: batches split across concurrent
clients on two server processes sharing Redis give what Keras gives for all the batches; and
posted one by one, result and variables match Keras after every batch."""

from __future__ import annotations

import asyncio
import random

import httpx
import numpy as np
import pytest

from app.metrics.registry import REGISTRY
from tests.cases import CASES, batches
from tests.oracle import (
    assert_close,
    json_array,
    keras_metric,
    keras_update,
    keras_variables,
    normalise_config,
)

IDS = [f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)]


def test_every_catalogue_class_has_a_case():
    assert {m for m, _, _ in CASES} == {s.name for s in REGISTRY.specs()}


def compare(reference, result, variables, where):
    assert_close(json_array(result["result"]), np.asarray(reference.result()), f"{where} result")
    theirs = keras_variables(reference)
    assert [v["name"] for v in variables["variables"]] == [n for n, _ in theirs]
    for v, (_, value) in zip(variables["variables"], theirs, strict=True):
        assert v["shape"] == list(np.shape(value))
        assert_close(json_array(v["value"]), value, f"{where} variable {v['name']}")


@pytest.mark.parametrize(("metric", "config", "kind"), CASES, ids=IDS)
async def test_split_across_concurrent_clients(live_servers, metric, config, kind):
    index = CASES.index((metric, config, kind))
    name = f"parity.concurrent.{index}.{random.randrange(10**9)}"
    data = batches(kind, seed=index)
    reference = keras_metric(metric, config)
    for batch in data:
        keras_update(reference, batch)
    async with httpx.AsyncClient(timeout=30) as client:
        created = await client.put(f"{live_servers[0]}/v1/sessions/{name}",
                                   json={"metric": metric, "config": config})
        assert created.status_code == 201, created.text
        shuffled = list(enumerate(data))
        random.Random(index).shuffle(shuffled)

        async def worker(part):
            async with httpx.AsyncClient(timeout=30) as own:
                for i, batch in part:
                    url = f"{live_servers[i % 2]}/v1/sessions/{name}/update"
                    r = await own.post(url, json=batch)
                    assert r.status_code == 200, r.text

        await asyncio.gather(*(worker(shuffled[w::4]) for w in range(4)))
        result = (await client.get(f"{live_servers[1]}/v1/sessions/{name}/result")).json()
        variables = (await client.get(f"{live_servers[0]}/v1/sessions/{name}/variables")).json()
        config_doc = (await client.get(f"{live_servers[1]}/v1/sessions/{name}/config")).json()
    compare(reference, result, variables, f"{metric}({config}) concurrent")
    expected = reference.get_config()
    if "fn" in config:  # Keras serialises the function; Tally names it, which Keras accepts
        expected["fn"] = config["fn"]
    assert normalise_config(config_doc) == normalise_config(expected)


@pytest.mark.parametrize(("metric", "config", "kind"), CASES, ids=IDS)
async def test_after_every_batch(live_servers, metric, config, kind):
    index = CASES.index((metric, config, kind))
    name = f"parity.sequential.{index}.{random.randrange(10**9)}"
    reference = keras_metric(metric, config)
    async with httpx.AsyncClient(base_url=live_servers[0], timeout=30) as client:
        await client.put(f"/v1/sessions/{name}", json={"metric": metric, "config": config})
        for step, batch in enumerate(batches(kind, seed=100 + index, count=4)):
            keras_update(reference, batch)
            assert (await client.post(f"/v1/sessions/{name}/update", json=batch)).status_code \
                == 200
            result = (await client.get(f"/v1/sessions/{name}/result")).json()
            variables = (await client.get(f"/v1/sessions/{name}/variables")).json()
            compare(reference, result, variables, f"{metric}({config}) batch {step}")
        reset = (await client.post(f"/v1/sessions/{name}/reset")).json()
        assert_close(json_array(reset["closed"]["result"]), np.asarray(reference.result()),
                     "closed epoch result")
        reference.reset_state()
        result = (await client.get(f"/v1/sessions/{name}/result")).json()
        assert_close(json_array(result["result"]), np.asarray(reference.result()),
                     "after reset")
