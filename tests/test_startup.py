"""Start-up checks (app/startup.py): one line and status 3 for a configuration that cannot
serve correctly, for settings, worker processes, the Redis mode and plugins; real uvicorn
processes (one worker, several, --reload) and the container's entry command."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from app import startup
from app.api.app import create_app
from app.settings import Settings
from tests.redis_servers import free_port

ROOT = Path(__file__).parent.parent
STARTUP_TIMEOUT = 120  # seconds; a bound for a process that must exit, not a timing assertion


@pytest.fixture
def env(monkeypatch):
    """A process environment without TALLY_ variables or WEB_CONCURRENCY; returns a setter."""
    for key in list(os.environ):
        if key.upper().startswith("TALLY_") or key == "WEB_CONCURRENCY":
            monkeypatch.delenv(key)

    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)

    return set_env


def refusal() -> str:
    """The one line `load_settings` refuses the environment with."""
    with pytest.raises(startup.StartupRefused) as refused:
        startup.load_settings()
    message = str(refused.value)
    assert "\n" not in message
    return message


# -- settings ------------------------------------------------------------------------------
SECRET = "s3cret-token-value"


@pytest.mark.parametrize(("tokens", "fragments"), [
    ("not json", ["TALLY_TOKENS", "should be a JSON object", "not JSON"]),
    ("", ["TALLY_TOKENS", "an empty value"]),
    ("{}", ["TALLY_TOKENS", "no token", "unset TALLY_TOKENS"]),
    (f'["{SECRET}"]', ["TALLY_TOKENS", "should be a JSON object", "got a JSON array"]),
    (json.dumps({SECRET: {"scopes": []}}), ["token #1", "'scopes'", "at least 1", "got []"]),
    (json.dumps({"a": {"scopes": ["read"]}, SECRET: {"scopes": ["raed"]}}),
     ["token #2", "'scopes'[0]", "'read', 'write' or 'admin'", "got 'raed'"]),
    (json.dumps({SECRET: "admin"}), ["token #1", "should be a JSON object", "got a JSON string"]),
    (json.dumps({SECRET: {"scopes": ["read"], "prefx": "run."}}),
     ["token #1", "'prefx'", "not a known key"]),
    (json.dumps({SECRET: {}}), ["token #1", "'scopes'", "is required"]),
    (json.dumps({"two words": {"scopes": ["read"]}}), ["token #1", "without spaces"]),
])
def test_a_bad_token_table_is_refused_in_one_line_without_its_secrets(env, tokens, fragments):
    env(TALLY_TOKENS=tokens)
    message = refusal()
    for fragment in fragments:
        assert fragment in message, message
    assert SECRET not in message and "two words" not in message


@pytest.mark.parametrize(("variable", "value", "fragments"), [
    ("TALLY_MAX_BODY_BYTES", "64MB", ["TALLY_MAX_BODY_BYTES", "valid integer", "got '64MB'"]),
    ("TALLY_HISTORY_LIMIT", "0", ["TALLY_HISTORY_LIMIT", "greater than 0", "got '0'"]),
    ("TALLY_REDIS_CLUSTER", "maybe", ["TALLY_REDIS_CLUSTER", "valid boolean", "got 'maybe'"]),
    ("TALLY_REDIS_TIMEOUT_SECONDS", "-1", ["TALLY_REDIS_TIMEOUT_SECONDS", "greater than 0"]),
    ("TALLY_REDIS_URL", "http://user:pa55@host:6379", [
        "TALLY_REDIS_URL", "redis://, rediss://, unix://", "got 'http://user:***@host:6379'"]),
    ("tally_max_ttl_seconds", "soon", ["TALLY_MAX_TTL_SECONDS", "got 'soon'"]),
    ("TALLY_ALLOCATOR_KEEP_BYTES", "-1", ["TALLY_ALLOCATOR_KEEP_BYTES", "greater than or equal",
                                          "got '-1'"]),
    ("TALLY_ALLOCATOR_KEEP_BYTES", str(2**31), ["TALLY_ALLOCATOR_KEEP_BYTES",
                                                "less than or equal to 1073741824"]),
])
def test_an_invalid_setting_is_refused_in_one_line(env, variable, value, fragments):
    env(**{variable: value})
    message = refusal()
    for fragment in fragments:
        assert fragment in message, message
    assert "pa55" not in message


def test_every_invalid_setting_is_named_in_the_same_line(env):
    env(TALLY_MAX_BODY_BYTES="x", TALLY_HISTORY_LIMIT="-3")
    message = refusal()
    assert "TALLY_MAX_BODY_BYTES" in message and "TALLY_HISTORY_LIMIT" in message


def test_valid_settings_load(env):
    env(TALLY_TOKENS=json.dumps({"abc": {"scopes": ["write"], "prefix": "run."}}),
        TALLY_REDIS_URL="", TALLY_MAX_BODY_BYTES="1000")
    settings = startup.load_settings()
    assert settings.tokens["abc"].scopes == ["write"] and settings.tokens["abc"].prefix == "run."
    assert settings.redis_url is None  # empty counts as unset
    assert settings.max_body_bytes == 1000


def test_the_server_process_lets_malloc_keep_freed_memory(env, monkeypatch):
    """checked_app (what `uvicorn app.main:app` runs in each worker) applies the setting;
    tests/test_allocator.py checks what it does to the allocator."""
    kept = []
    monkeypatch.setattr(startup, "keep_freed_memory", kept.append)
    monkeypatch.setattr(startup, "freeze_startup_objects", lambda: 0)  # not this process
    env(TALLY_ALLOCATOR_KEEP_BYTES="12345")
    startup.checked_app()
    monkeypatch.delenv("TALLY_ALLOCATOR_KEEP_BYTES")
    startup.checked_app()
    assert kept == [12345, 64 * 1024 * 1024]  # the documented default (README)


def test_the_server_process_freezes_its_startup_objects():
    """What `uvicorn app.main:app` imports: every object alive once the app is built is out of
    the collector's reach, so a full collection does not walk them (startup.py)."""
    probe = ("import gc, app.main; print(gc.get_freeze_count(), len(gc.get_objects()), "
             "app.main.app.title)")
    out = run_to_exit([sys.executable, "-c", probe])
    assert out.returncode == 0, out.stderr
    frozen, still_tracked, title = out.stdout.split()
    assert title == "Tally"
    assert int(frozen) > 10_000 and int(still_tracked) < int(frozen) / 10


def test_a_misspelt_variable_is_named_with_a_suggestion(env, caplog):
    env(TALLY_REDIS_ULR="redis://x")
    with caplog.at_level(logging.WARNING, logger="tally"):
        startup.load_settings()
    assert "TALLY_REDIS_ULR is not a Tally setting and is ignored; did you mean " \
           "TALLY_REDIS_URL?" in caplog.text


def test_redacted_hides_only_the_password():
    assert startup.redacted("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert startup.redacted("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert startup.redacted("redis://h:1/0") == "redis://h:1/0"


# -- worker processes ----------------------------------------------------------------------
def serving_under(config: uvicorn.Config) -> startup.Serving:
    self = config  # noqa: F841 - uvicorn's Config.load() has it so while it imports the app
    return startup.serving()


@pytest.mark.parametrize(("options", "processes"), [
    ({}, 7),  # no --workers: uvicorn takes WEB_CONCURRENCY
    ({"workers": 3}, 3),
    ({"workers": 1}, 1),
    ({"workers": 3, "reload": True}, 1),  # uvicorn ignores workers with --reload
])
def test_the_worker_count_is_uvicorns(env, options, processes):
    env(WEB_CONCURRENCY="7")
    assert serving_under(uvicorn.Config("app.main:app", **options)).processes == processes


def test_without_uvicorn_the_worker_count_is_web_concurrency(env):
    assert startup.serving().processes == 1
    env(WEB_CONCURRENCY="4")
    assert startup.serving() == startup.Serving(4)
    env(WEB_CONCURRENCY="four")
    with pytest.raises(startup.StartupRefused, match="WEB_CONCURRENCY .* got 'four'"):
        startup.serving()


def test_only_the_own_parent_supervisor_is_ever_stopped():
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        startup.stop_supervisor(startup.Serving(2, bystander.pid))  # not our parent
        startup.stop_supervisor(startup.Serving(2, None))
        startup.stop_supervisor(startup.Serving(1))
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_several_processes_need_redis():
    with pytest.raises(startup.StartupRefused, match=re.escape(startup.ONE_PROCESS)):
        startup.check_processes(Settings(), startup.Serving(2))
    startup.check_processes(Settings(), startup.Serving(1))
    startup.check_processes(Settings(redis_url="redis://localhost:1/0"), startup.Serving(8))


# -- Redis mode ----------------------------------------------------------------------------
def test_a_cluster_node_without_the_cluster_flag_is_refused(redis_cluster):
    with pytest.raises(startup.StartupRefused, match="set TALLY_REDIS_CLUSTER=true"):
        startup.check_redis_mode(Settings(redis_url=redis_cluster.url))
    startup.check_redis_mode(Settings(redis_url=redis_cluster.url, redis_cluster=True))


def test_a_plain_redis_with_the_cluster_flag_is_refused(redis_server):
    with pytest.raises(startup.StartupRefused, match="is not a Redis Cluster node"):
        startup.check_redis_mode(Settings(redis_url=redis_server.url, redis_cluster=True))
    startup.check_redis_mode(Settings(redis_url=redis_server.url))


def test_an_unreachable_redis_is_logged_not_refused(caplog):
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    with caplog.at_level(logging.WARNING, logger="tally"):
        startup.check_redis_mode(Settings(redis_url=url, redis_timeout_seconds=0.5))
    assert "does not answer at start-up" in caplog.text and "/readyz answers 503" in caplog.text
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize("flag", [False, True])
def test_readyz_reports_a_mode_mismatch(redis_server, redis_cluster, flag):
    """The node of the other kind: ready is 503 with the reason, never a 500."""
    url = redis_server.url if flag else redis_cluster.url
    settings = Settings(redis_url=url, redis_cluster=flag, redis_timeout_seconds=1.0)
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503, response.text
        assert "TALLY_REDIS_CLUSTER" in response.json()["detail"]
        assert client.head("/readyz").status_code == 503


@pytest.mark.parametrize("flag", [False, True])
def test_readyz_is_ready_when_the_mode_matches(redis_server, redis_cluster, flag):
    url = redis_cluster.url if flag else redis_server.url
    with TestClient(create_app(Settings(redis_url=url, redis_cluster=flag))) as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.head("/readyz").status_code == 200


# -- real processes ------------------------------------------------------------------------
def clean_env(**values: str) -> dict[str, str]:
    """This environment without Tally's and uvicorn's variables, with this interpreter's
    `python` and `uvicorn` first on the PATH (as in the image)."""
    base = {k: v for k, v in os.environ.items()
            if not k.upper().startswith(("TALLY_", "UVICORN_")) and k != "WEB_CONCURRENCY"}
    base["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")])
    return {**base, **values}


def run_to_exit(args: list[str], **values: str) -> subprocess.CompletedProcess[str]:
    """Run a process that must stop by itself (the timeout only bounds a hang)."""
    return subprocess.run(args, env=clean_env(**values), capture_output=True, text=True,
                          cwd=ROOT, timeout=STARTUP_TIMEOUT)


def uvicorn_args(*extra: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
            "--port", str(free_port()), *extra]


def refusal_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tally: cannot start: ")]


def assert_refused(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode != 0, done.stderr
    lines = refusal_lines(done.stderr)
    assert lines, done.stderr
    assert all(line == lines[0] for line in lines)  # one line, once per worker process
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in done.stderr


def test_uvicorn_with_several_workers_and_no_redis_exits_non_zero():
    """Each worker refuses with status 3; uvicorn would then stop but exit 0, so the worker
    stops its supervisor, and nothing restarts the workers forever."""
    done = run_to_exit(uvicorn_args("--workers", "2"))
    assert_refused(done, startup.ONE_PROCESS, "got 2 worker processes")


def test_web_concurrency_counts_as_uvicorns_workers():
    done = run_to_exit(uvicorn_args(), WEB_CONCURRENCY="2")
    assert_refused(done, startup.ONE_PROCESS, "got 2 worker processes")


def test_uvicorn_refuses_a_bad_token_table_in_one_line():
    done = run_to_exit(uvicorn_args(), TALLY_TOKENS=json.dumps({SECRET: {"scopes": []}}))
    assert done.returncode == startup.EXIT_STARTUP_FAILURE
    assert_refused(done, "TALLY_TOKENS token #1 'scopes'")
    assert SECRET not in done.stderr


def test_uvicorn_refuses_a_plugin_that_does_not_load():
    done = run_to_exit(uvicorn_args(), TALLY_PLUGINS="no_such_plugin_module")
    assert done.returncode == startup.EXIT_STARTUP_FAILURE
    assert_refused(done, "no_such_plugin_module")


def test_uvicorn_refuses_a_cluster_node_used_as_plain_redis(redis_cluster):
    done = run_to_exit(uvicorn_args(), TALLY_REDIS_URL=redis_cluster.url)
    assert done.returncode == startup.EXIT_STARTUP_FAILURE
    assert_refused(done, "is a Redis Cluster node", "set TALLY_REDIS_CLUSTER=true")


def serve_until_ready(args: list[str], url: str, **values: str) -> None:
    """Start a server that must become ready, then stop it."""
    process = subprocess.Popen(args, env=clean_env(**values), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("the server did not become ready")
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_reload_runs_one_worker_and_keeps_working(workers, tmp_path):
    """`--reload` imports the app in a child process too, but one: not refused (uvicorn
    ignores --workers then)."""
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
            "--port", str(port), "--reload", "--reload-dir", str(tmp_path),
            "--workers", workers]
    serve_until_ready(args, f"http://127.0.0.1:{port}")


# -- the container -------------------------------------------------------------------------
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()


def dockerfile_instruction(name: str) -> str:
    found = re.findall(rf"^{name} (.+)$", DOCKERFILE, flags=re.MULTILINE)
    assert len(found) == 1, f"one {name} expected"
    return found[0]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", DOCKERFILE, flags=re.MULTILINE):
        env.update(pair.split("=", 1) for pair in shlex.split(line))
    return env


def container_command() -> list[str]:
    command = json.loads(dockerfile_instruction("CMD"))  # exec form: a JSON array
    assert isinstance(command, list) and all(isinstance(part, str) for part in command)
    return command


def test_the_image_runs_one_worker_by_default_from_an_environment_variable():
    assert dockerfile_env()["WEB_CONCURRENCY"] == "1"
    assert "--workers" not in " ".join(container_command())  # so the variable decides
    base = dockerfile_instruction("FROM")
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base


def test_the_container_command_refuses_workers_without_redis_before_uvicorn():
    done = run_to_exit(container_command(), **{**dockerfile_env(), "WEB_CONCURRENCY": "2"})
    assert done.returncode == startup.EXIT_STARTUP_FAILURE
    assert_refused(done, startup.ONE_PROCESS)
    assert "Uvicorn running" not in done.stderr


def test_the_container_command_serves_and_its_healthcheck_passes():
    port = str(free_port())
    values = {**dockerfile_env(), "UVICORN_HOST": "127.0.0.1", "UVICORN_PORT": port}
    serve_process = subprocess.Popen(container_command(), env=clean_env(**values), cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        healthcheck = json.loads(dockerfile_instruction("HEALTHCHECK").split(" CMD ", 1)[1])
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            done = subprocess.run(healthcheck, env=clean_env(**values), capture_output=True,
                                  timeout=STARTUP_TIMEOUT)
            if done.returncode == 0:
                break
            assert serve_process.poll() is None, "the container command exited"
            assert time.monotonic() < deadline, done.stderr
            time.sleep(0.2)
    finally:
        serve_process.terminate()
        serve_process.wait(timeout=30)
