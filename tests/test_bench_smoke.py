"""The benchmark harness' pieces work: wrk's report parses, servers start on uvloop + httptools,
the Lua scripts send what they should. No timing is asserted (bench/ measures, tests don't)."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from bench import bare_app
from bench.bodies import JSON, NPZ, BodyFiles
from bench.latency_figures import FLOOR, floor_row
from bench.report import Row, markdown_table, text_table
from bench.run_all import arguments, parse_env
from bench.servers import fast_stack_loaded, serving
from bench.wrk_runner import RUN_ID, Load, combined, parse_report, result_from_report, run_wrk

REPORT = ('Running 1s test @ http://127.0.0.1:1/\n  1 threads and 2 connections\n'
          'WRK_JSON {"requests":120,"duration_us":1000000,"bytes":9000,"errors":{"connect":0,'
          '"read":0,"write":0,"status":3,"timeout":0},"latency_us":{"mean":812.5,"max":4000,'
          '"p50":700,"p90":1200,"p99":3000}}\n')


def test_report_line_parses_into_a_result() -> None:
    result = result_from_report(parse_report(REPORT), wrk_cpu_seconds=0.25)
    assert (result.requests, result.seconds, result.rate) == (120, 1.0, 120.0)
    assert result.failed == 3 and result.latency_us["p99"] == 3000
    assert result.wrk_cpu_share == 0.25
    both = combined([result, result])
    assert both.requests == 240 and both.errors["status"] == 6


def test_missing_report_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="WRK_JSON"):
        parse_report("Running 1s test\n")


def test_tables_hold_every_row() -> None:
    rows = [Row("http", "POST update", "1 req/s", "2 req/s (bare)", 0.5, ">= 0.8x", "a note"),
            Row("memory", "bytes", "8 B", "6 B", None)]
    text, markdown = text_table(rows), markdown_table(rows)
    assert "0.50x" in text and "a note" in text and "bytes" in text
    assert markdown.count("\n") == 3


def test_floor_row_sets_the_floor_against_the_goal_budget() -> None:
    """JSON 200 ms: the 10x goal allows 20 ms; the ratio is JSON time / floor."""
    within = floor_row({JSON: 0.2, NPZ: 0.025, FLOOR: 0.016}, rounds=3)
    assert within.value == "16.00 ms" and within.baseline.startswith("20.00 ms")
    assert within.ratio == 0.2 / 0.016 and "is within the 10x budget" in within.note
    assert "9.00 ms beyond it" in within.note
    above = floor_row({JSON: 0.2, NPZ: 0.025, FLOOR: 0.021}, rounds=3)
    assert above.ratio is not None and above.ratio < 10 and "is above" in above.note


def test_bare_body_endpoint_only_reads_the_body() -> None:
    with TestClient(bare_app.app) as client:
        r = client.post("/v1/sessions/x/body", content=b"PK\x03\x04" + bytes(100_000),
                        headers={"Content-Type": NPZ})
    assert r.status_code == 204 and r.content == b""


def test_options_name_known_parts_and_tally_settings() -> None:
    assert arguments(["--only", "http,engine"]).only == "http,engine"
    with pytest.raises(SystemExit):
        arguments(["--only", "nope"])
    assert parse_env(["TALLY_X=1"]) == {"TALLY_X": "1"}
    with pytest.raises(SystemExit):
        parse_env(["PATH=/"])


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make bench)")
def test_wrk_drives_the_bare_app_on_the_fast_stack() -> None:
    bodies = BodyFiles()
    load = Load(threads=1, connections=2, seconds=1)
    try:
        with serving("bare", "bench.bare_app:app", {}) as bare:
            assert fast_stack_loaded(bare)
            url = bare.url + "/v1/sessions/smoke"
            post = run_wrk(url + "/update", "post_idempotent.lua",
                           [bodies.path(32, JSON), JSON, RUN_ID], load)
            get = run_wrk(url + "/result", "get.lua", [], load)
    finally:
        bodies.close()
    for result in (post, get):
        assert result.requests > 0 and result.failed == 0


async def test_inprocess_calls_reach_the_app_and_report_errors() -> None:
    """bench.inprocess drives the ASGI app directly: a real update lands, an error raises."""
    from bench.inprocess import BODY, asgi_call, tally

    async with tally("memory") as app:
        await asgi_call(app, "POST", "/v1/sessions/p/update", BODY)
        snapshot = await app.state.sessions.store.read("p")
        assert snapshot is not None and snapshot.state.sums.sum() > 0
        with pytest.raises(RuntimeError, match="404"):
            await asgi_call(app, "GET", "/v1/sessions/missing/result")
