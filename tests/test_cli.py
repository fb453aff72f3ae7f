"""The `tally` command: `serve` through the installed console script (real processes), and the
terminal commands (`ls`, `show`, `reset`, `update`) against it, run in this process."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from app import cli
from app.startup import EXIT_STARTUP_FAILURE, ONE_PROCESS
from tests.served import ROOT, Served

TOKENS = {"writer": {"scopes": ["write"]}, "reader": {"scopes": ["read"]}}
WRITER = {"Authorization": "Bearer writer"}
# The Keras documentation's Precision example (the README's quick start): 0.8, then 0.5.
FIRST = {"y_true": [0, 1, 1, 1, 0, 1, 0, 1], "y_pred": [1, 1, 0, 1, 0, 1, 0, 1]}
SECOND = {"y_true": [0, 1, 0, 0, 1, 0, 1, 1], "y_pred": [1, 0, 1, 1, 0, 0, 0, 0]}


@pytest.fixture(scope="module")
def server():
    served = Served.tally(TALLY_TOKENS=json.dumps(TOKENS)).ready()
    yield served
    served.stop()


@pytest.fixture
def tally(server, monkeypatch, capsys):
    """Run `tally ARGS...` in this process against the server, with the writer's token from
    TALLY_TOKEN: (exit status, stdout, stderr)."""
    monkeypatch.setenv("TALLY_URL", server.url)
    monkeypatch.setenv("TALLY_TOKEN", "writer")

    def run(*args: str) -> tuple[int, str, str]:
        status = cli.main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def session(server, request):
    """A fresh Precision session named after the test."""
    name = "cli." + re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)
    created = httpx.put(f"{server.url}/v1/sessions/{name}", json={"metric": "Precision"},
                        headers=WRITER)
    assert created.status_code in (200, 201), created.text
    return name


def result(server, name: str) -> float:
    return httpx.get(f"{server.url}/v1/sessions/{name}/result", headers=WRITER).json()["result"]


def npz(path: Path, **arrays: object) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    path.write_bytes(buffer.getvalue())
    return path


# -- serve ---------------------------------------------------------------------------------
def test_serve_runs_uvicorn_and_logs_through_it(server):
    log = server.output()
    assert "Uvicorn running on" in log
    assert "WARNING:  TALLY_REDIS_URL is not set" in log  # Tally's logger, uvicorn's format


def test_serve_refuses_several_workers_without_redis_in_one_line():
    served = Served.tally("--workers", "2")
    try:
        assert served.wait() == EXIT_STARTUP_FAILURE
        output = served.output()
    finally:
        served.stop()
    lines = [line for line in output.splitlines() if line.startswith("tally: cannot start: ")]
    assert len(lines) == 1 and ONE_PROCESS in lines[0] and "got 2 worker processes" in lines[0]
    assert "Uvicorn running" not in output and "Traceback" not in output


def test_serve_takes_the_worker_count_from_web_concurrency():
    served = Served.tally(WEB_CONCURRENCY="3")
    try:
        assert served.wait() == EXIT_STARTUP_FAILURE
        assert "got 3 worker processes" in served.output()
    finally:
        served.stop()


def test_serve_with_several_workers_on_redis(redis_server):
    served = Served.tally("--workers", "2", TALLY_REDIS_URL=redis_server.url)
    try:
        served.ready()
        assert "Started parent process" in served.output()  # uvicorn's supervisor
    finally:
        served.stop()


def test_openapi_prints_the_committed_schema(tally):
    status, out, _ = tally("openapi")
    assert status == 0
    assert json.loads(out) == json.loads((ROOT / "openapi" / "openapi.json").read_text())


# -- update, show, reset -------------------------------------------------------------------
def test_update_from_json_then_npz_gives_keras_result(tally, server, session, tmp_path):
    batch = tmp_path / "first.json"
    batch.write_text(json.dumps(FIRST))
    assert tally("update", session, "--file", str(batch)) == \
        (0, f"{session}: applied 8 samples to epoch 0\n", "")
    assert result(server, session) == pytest.approx(0.8)
    status, out, _ = tally("update", session, "--file", str(npz(tmp_path / "b.npz", **SECOND)))
    assert (status, out) == (0, f"{session}: applied 8 samples to epoch 0\n")
    assert result(server, session) == pytest.approx(0.5)


def test_update_with_an_epoch_precondition(tally, server, session, tmp_path):
    batch = npz(tmp_path / "b.npz", **FIRST)
    status, _, err = tally("update", session, "--file", str(batch), "--epoch", "3")
    assert status == 1
    assert err.startswith("tally: 409 Conflict: ") and "(current_epoch: 0)" in err
    assert tally("update", session, "--file", str(batch), "--epoch", "0")[0] == 0
    json_batch = tmp_path / "b.json"
    json_batch.write_text(json.dumps(SECOND))
    assert tally("update", session, "--file", str(json_batch), "--epoch", "1")[0] == 1
    assert result(server, session) == pytest.approx(0.8)  # only the accepted batch counted


def test_an_idempotency_key_given_twice_counts_once(tally, server, session, tmp_path):
    batch = npz(tmp_path / "b.npz", **FIRST)
    for _ in range(2):
        assert tally("update", session, "--file", str(batch), "--idempotency-key", "k1")[0] == 0
    variables = httpx.get(f"{server.url}/v1/sessions/{session}/variables",
                          headers=WRITER).json()["variables"]
    assert variables[0]["value"] == [4.0]  # true positives of one batch, not two


def test_show_prints_document_variables_and_history(tally, session, tmp_path):
    batch = tmp_path / "b.json"
    batch.write_text(json.dumps(FIRST))
    tally("update", session, "--file", str(batch))
    assert tally("reset", session, "--epoch", "0") == \
        (0, f"{session}: closed epoch 0 (result 0.8); now at epoch 1\n", "")
    status, out, _ = tally("show", session)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", session]
    assert lines[1].split() == ["metric", "Precision"]
    assert lines[2].split() == ["epoch", "1"]
    assert lines[3].split() == ["result", "0.0"]
    assert any(line.split()[:2] == ["config", '{"name":'] for line in lines)
    assert "  true_positives   [1]  float32  [0.0]" in lines
    assert "history (1 closed epoch)" in lines
    assert lines[-1].split()[0::2] == ["0", "0.8"]


def test_reset_at_the_wrong_epoch_prints_the_problem(tally, session):
    status, out, err = tally("reset", session, "--epoch", "5")
    assert (status, out) == (1, "")
    assert err.startswith("tally: 409 Conflict: ") and "(current_epoch: 0)" in err


def test_show_of_a_slashed_name_prints_the_name_rule(tally):
    status, _, err = tally("show", "run1/val")
    assert status == 1
    assert "tally: 404 Not Found: no route matches /v1/sessions/run1/val" in err
    assert "use dots for hierarchy" in err


# -- ls ------------------------------------------------------------------------------------
def test_ls_follows_next_cursor(tally, server, monkeypatch):
    names = [f"page.s{i}" for i in range(5)]
    for name in names:
        httpx.put(f"{server.url}/v1/sessions/{name}", json={"metric": "Mean"}, headers=WRITER)
    httpx.post(f"{server.url}/v1/sessions/page.s3/update", json={"values": [1, 2]},
               headers=WRITER)
    monkeypatch.setattr(cli, "PAGE_LIMIT", 2)  # three pages
    status, out, _ = tally("ls", "page.")
    assert status == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NAME", "METRIC", "EPOCH", "RESULT"]
    assert [row[0] for row in rows[1:]] == names
    assert rows[4] == ["page.s3", "Mean", "0", "1.5"]


def test_ls_of_an_empty_prefix_says_so(tally):
    assert tally("ls", "nothing.here.") == \
        (0, "", "no sessions whose name starts with 'nothing.here.'\n")


# -- connection and errors -----------------------------------------------------------------
def test_without_a_token_the_401_is_printed(tally, monkeypatch):
    monkeypatch.delenv("TALLY_TOKEN")
    status, out, err = tally("ls")
    assert (status, out) == (1, "")
    assert err.startswith("tally: 401 Unauthorized: ")


def test_url_and_token_options_win_over_the_environment(tally, server, monkeypatch):
    monkeypatch.setenv("TALLY_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TALLY_TOKEN", "nobody")
    assert tally("ls", "--url", server.url, "--token", "reader")[0] == 0


def test_an_unreachable_service_is_named(tally, monkeypatch):
    monkeypatch.setenv("TALLY_URL", "http://127.0.0.1:9")
    status, _, err = tally("ls")
    assert status == 1
    assert err.startswith("tally: cannot reach http://127.0.0.1:9 (ConnectError")


@pytest.mark.parametrize(("file", "content", "message"), [
    ("batch.csv", "0,1", "--file should end in .npz or .json; got 'batch.csv'"),
    ("batch.json", "[1, 2]", "should hold a JSON object"),
    ("batch.json", "{oops", "is not JSON"),
    ("missing.npz", None, "cannot read"),
])
def test_a_bad_batch_file_is_a_usage_error(tally, session, tmp_path, file, content, message):
    path = tmp_path / file
    if content is not None:
        path.write_text(content)
    status, _, err = tally("update", session, "--file", str(path))
    assert status == cli.EXIT_USAGE and message in err


def test_a_broken_npz_gets_the_services_problem(tally, session, tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip")
    status, _, err = tally("update", session, "--file", str(path))
    assert status == 1 and err.startswith("tally: 400 Bad Request: ")

