"""Start-up checks: a configuration that cannot serve correctly stops the process.

`app.main` runs them when the server imports it, in every worker process. A refusal is ONE
line on stderr (`tally: cannot start: ...`, saying what was expected and what was received;
never a traceback, never a secret) and exit status 3, the "failed to boot" status of uvicorn
and gunicorn, so that their supervisors stop instead of restarting the worker forever.

Refused: an invalid `TALLY_` setting (including a token table that grants nothing), several
worker processes on the in-memory store (each would hold its own state), a Redis whose
cluster mode is not the one `TALLY_REDIS_CLUSTER` says, and a plugin that fails to load. A
Redis that does not answer at start is not refused: the service starts and `/readyz` answers
503 until it does.

`python -m app.startup` runs the same checks in the current process and exits (0 when all
pass): the container runs it before uvicorn, whose supervisor is then PID 1 and cannot be
stopped by a worker (see `stop_supervisor`).
"""

from __future__ import annotations

import difflib
import gc
import json
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import redis
from pydantic import ValidationError
from pydantic_settings import SettingsError

from app import prometheus_dir
from app.allocator import keep_freed_memory
from app.errors import ConfigError
from app.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("tally")

#: uvicorn's STARTUP_FAILURE and gunicorn's WORKER_BOOT_ERROR: "do not restart me".
EXIT_STARTUP_FAILURE = 3
#: The longest the start-up waits for Redis to say which mode it runs in.
REDIS_PROBE_SECONDS = 2.0
PREFIX = "TALLY_"
TOKENS_SHAPE = ('a JSON object {"<token>": {"scopes": ["read" | "write" | "admin", ...], '
                '"prefix": "<session-name prefix, optional>"}, ...}')
ONE_PROCESS = ("the in-memory store serves one process; set TALLY_REDIS_URL or use one worker")


class StartupRefused(Exception):
    """The configuration cannot serve correctly; the message is the one line to print."""


# -- settings ------------------------------------------------------------------------------
def load_settings() -> Settings:
    """Settings from the environment, or `StartupRefused` with every problem in one line."""
    try:
        settings = Settings()
    except SettingsError as exc:
        raise StartupRefused(_unparsable(exc, os.environ)) from None
    except ValidationError as exc:
        raise StartupRefused("; ".join(_describe(e, os.environ) for e in exc.errors())) \
            from None
    if not settings.tokens and _raw(os.environ, "tokens") is not None:
        raise StartupRefused(f"TALLY_TOKENS should be {TOKENS_SHAPE}; got an object with no "
                             "token (unset TALLY_TOKENS to run without auth)")
    for warning in unknown_variables(os.environ):
        log.warning(warning)
    return settings


def _field_of(variable: str) -> str | None:
    if not variable.upper().startswith(PREFIX):
        return None
    field = variable[len(PREFIX):].lower()
    return field if field in Settings.model_fields else None


def _variable(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


def _raw(environ: Mapping[str, str], field: str) -> str | None:
    """The value the environment gives `field` (variable names are case-insensitive)."""
    for key, value in environ.items():
        if _field_of(key) == field:
            return value
    return None


def _not_json(variable: str, value: str, exc: BaseException) -> str:
    received = "an empty value" if not value.strip() else \
        f"{len(value)} characters that are not JSON ({exc})"
    expected = TOKENS_SHAPE if variable == "TALLY_TOKENS" else "JSON"
    return f"{variable} should be {expected}; got {received}"


def _unparsable(exc: SettingsError, environ: Mapping[str, str]) -> str:
    """pydantic-settings could not decode a JSON-valued variable (only TALLY_TOKENS is one)."""
    field = next((f for f in Settings.model_fields if f'"{f}"' in str(exc)), "tokens")
    return _not_json(_variable(field), _raw(environ, field) or "", exc.__cause__ or exc)


def _describe(error: Any, environ: Mapping[str, str]) -> str:
    """One pydantic error as `VARIABLE <where> should be <expected>; got <received>`.
    Token values are secrets: a token is named by its position, and what was received is
    shown only inside a grant (scopes, prefix), never at the level of the token table."""
    field, *inner = error["loc"]
    variable = _variable(str(field))
    expected = _expectation(error)
    if field != "tokens":
        return f"{variable} {expected}; got {_shown(str(field), error['input'])}"
    if not inner and error["type"] == "value_error":  # our own check, which names the token
        return f"{variable}: {expected}"
    where = ""
    if inner:
        where = f" token #{_token_position(str(inner[0]), environ)}"
        where += "".join(f"[{p}]" if isinstance(p, int) else f" {p!r}" for p in inner[1:])
    got = repr(error["input"]) if len(inner) >= 2 else f"a JSON {_json_kind(error['input'])}"
    return f"{variable}{where} {expected}; got {got} (expected {TOKENS_SHAPE})"


def _expectation(error: Any) -> str:
    """What pydantic expected, worded for someone setting an environment variable."""
    by_type = {
        "dict_type": "should be a JSON object",
        "model_type": "should be a JSON object",
        "missing": "is required",
        "extra_forbidden": "is not a known key",
        "too_short": f"should have at least {error.get('ctx', {}).get('min_length')} item(s)",
    }
    if error["type"] in by_type:
        return by_type[error["type"]]
    message = str(error["msg"])
    for prefix in ("Input ", "Value error, "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return "is invalid: " + message[:1].lower() + message[1:]


def _shown(field: str, value: Any) -> str:
    if field == "redis_url" and isinstance(value, str):
        return repr(redacted(value))
    return repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."


def _json_kind(value: Any) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def _token_position(token: str, environ: Mapping[str, str]) -> str:
    try:
        return str(list(json.loads(_raw(environ, "tokens") or "{}")).index(token) + 1)
    except (ValueError, TypeError):
        return "?"


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Warnings for `TALLY_` variables no setting reads (a misspelt name would otherwise be
    ignored without a word). Not refused: other tools (clients) may use the prefix too."""
    known = [_variable(f) for f in Settings.model_fields]
    warnings = []
    for key in sorted(environ):
        if key.upper().startswith(PREFIX) and _field_of(key) is None:
            close = difflib.get_close_matches(key.upper(), known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"{key} is not a Tally setting and is ignored{hint}")
    return warnings


def redacted(url: str) -> str:
    """`url` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# -- worker processes ----------------------------------------------------------------------
@dataclass(frozen=True)
class Serving:
    """How this process is served: how many processes serve the app, and the pid of the
    uvicorn supervisor that restarts them (None when there is none)."""

    processes: int
    supervisor: int | None = None


def serving() -> Serving:
    """How the server importing `app.main` runs it.

    Under uvicorn, its `Config` is on the call stack while the app is imported: in the one
    process of `uvicorn app.main:app`, and in each worker of `--workers N`, which receives the
    supervisor's Config (so `workers` is the count the supervisor runs, whether it came from
    `--workers`, `WEB_CONCURRENCY` or `uvicorn.run(workers=N)`). `--reload` also imports the
    app in a child process, but runs one; uvicorn ignores `workers` then. Elsewhere (the
    pre-flight check, gunicorn) `WEB_CONCURRENCY` is the worker count, as both servers read it.
    """
    config = _uvicorn_config()
    if config is None:
        return Serving(_web_concurrency())
    if config.should_reload or config.workers <= 1:
        return Serving(1)
    parent = multiprocessing.parent_process()
    return Serving(config.workers, parent.pid if parent is not None else None)


def _uvicorn_config() -> Any | None:
    try:
        from uvicorn.config import Config
    except ImportError:  # pragma: no cover - uvicorn is a dependency
        return None
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Config):
            return candidate
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _web_concurrency() -> int:
    value = os.environ.get("WEB_CONCURRENCY", "").strip()
    if not value:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise StartupRefused(f"WEB_CONCURRENCY (the number of worker processes) should be a "
                             f"positive integer; got {value!r}")
    return int(value)


def check_processes(settings: Settings, how: Serving) -> None:
    if how.processes > 1 and not settings.redis_url:
        raise StartupRefused(f"{ONE_PROCESS} (got {how.processes} worker processes and no "
                             "TALLY_REDIS_URL)")


# -- Redis mode ----------------------------------------------------------------------------
def mode_mismatch(settings: Settings, cluster_enabled: bool) -> str | None:
    """What is wrong when the server's cluster mode is not the configured one, else None."""
    where = f"the Redis at {redacted(settings.redis_url or '')}"
    if cluster_enabled and not settings.redis_cluster:
        return (f"{where} is a Redis Cluster node (cluster_enabled:1) but TALLY_REDIS_CLUSTER "
                "is false; set TALLY_REDIS_CLUSTER=true")
    if settings.redis_cluster and not cluster_enabled:
        return (f"TALLY_REDIS_CLUSTER is true but {where} is not a Redis Cluster node "
                "(cluster_enabled:0); set TALLY_REDIS_CLUSTER=false or name a cluster node")
    return None


def cluster_enabled(info: Mapping[str, Any]) -> bool:
    """From the answer to `INFO cluster` (Redis before 3.0 has no such section: no cluster)."""
    return str(info.get("cluster_enabled", "0")) == "1"


def probe_timeout(settings: Settings) -> float:
    return min(settings.redis_timeout_seconds, REDIS_PROBE_SECONDS)


def check_redis_mode(settings: Settings) -> None:
    """Refuse a Redis whose cluster mode does not match; one that does not answer is logged
    and the start goes on (`/readyz` answers 503 until it answers)."""
    if not settings.redis_url:
        return
    timeout = probe_timeout(settings)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=timeout,
                                  socket_connect_timeout=timeout)
    try:
        info = client.info("cluster")
    except (redis.RedisError, OSError) as exc:
        log.warning("Redis at %s does not answer at start-up (%s: %s); starting anyway, "
                    "/readyz answers 503 until it does", redacted(settings.redis_url),
                    type(exc).__name__, exc)
        return
    finally:
        client.close()
    problem = mode_mismatch(settings, cluster_enabled(info))
    if problem:
        raise StartupRefused(problem)


class RedisModeProbe:
    """The same question for `/readyz`, on one connection of its own (not the store's: a
    cluster client cannot even be built against a plain server)."""

    def __init__(self, settings: Settings) -> None:
        import redis.asyncio as aioredis

        timeout = probe_timeout(settings)
        self._settings = settings
        self._client = aioredis.Redis.from_url(settings.redis_url or "", socket_timeout=timeout,
                                               socket_connect_timeout=timeout)

    async def mismatch(self) -> str | None:
        """The mismatch, or None when the modes agree or the node does not answer (then the
        store's own ping decides)."""
        try:
            info = await self._client.info("cluster")
        except (redis.RedisError, OSError):
            return None
        return mode_mismatch(self._settings, cluster_enabled(info))

    async def close(self) -> None:
        await self._client.aclose()


# -- Prometheus ----------------------------------------------------------------------------
def prepare_prometheus(how: Serving) -> None:
    """Several workers count in one shared directory (`app.prometheus_dir`); it must be chosen
    before `prometheus_client` is imported, which reads `PROMETHEUS_MULTIPROC_DIR` once."""
    try:
        prometheus_dir.prepare(how.processes, how.supervisor)
    except (prometheus_dir.DirectoryRefused, OSError) as exc:
        raise StartupRefused(f"the Prometheus multi-process directory: {exc}") from None


# -- refusing ------------------------------------------------------------------------------
def checked_app() -> FastAPI:
    """The application, after every check; or the process ends with one line."""
    how = Serving(1)
    try:
        how = serving()
        settings = load_settings()
        check_processes(settings, how)
        check_redis_mode(settings)
        keep_freed_memory(settings.allocator_keep_bytes)
        prepare_prometheus(how)
        from app.api.app import create_app  # imports prometheus_client: after the line above

        app = create_app(settings)
        freeze_startup_objects()
        return app
    except StartupRefused as exc:
        refuse(str(exc), how)
    except ConfigError as exc:  # a plugin that does not load
        refuse(exc.detail, how)


def freeze_startup_objects() -> int:
    """Put every object alive after start-up (modules, classes, the app: ~80,000) out of the
    garbage collector's reach (`gc.freeze`); how many. A full collection walks every tracked
    object, ~40 ms here, and allocating enough containers starts one: a listing of 1,000
    sessions did each time (89 -> 39 ms in process, BENCHMARKS.md), and an update now and
    then, at the cost of everyone's latency. These objects live as long as the process; the
    garbage among them is collected first, so none is kept for ever."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def refuse(message: str, how: Serving) -> NoReturn:
    print(f"tally: cannot start: {message}", file=sys.stderr, flush=True)
    stop_supervisor(how)
    raise SystemExit(EXIT_STARTUP_FAILURE)


def stop_supervisor(how: Serving) -> None:
    """Stop the uvicorn supervisor of `--workers N` so that the service exits non-zero.

    uvicorn restarts a dead worker, except one that exits with status 3: then it stops every
    worker and exits, but with status 0, which orchestrators read as a deliberate stop. So the
    refusing worker ends its supervisor with SIGKILL (uvicorn handles SIGTERM, SIGINT and
    SIGHUP itself). The other workers refuse for the same reason and exit by themselves.
    Nothing is sent when the supervisor is not our parent any more, and a PID 1 supervisor
    (a container without an init) ignores the signal: there the pre-flight check refuses
    before uvicorn starts, and the status-3 exit still stops the workers."""
    if how.supervisor is not None and how.supervisor == os.getppid() and how.supervisor > 1:
        os.kill(how.supervisor, signal.SIGKILL)


def main() -> None:
    """The pre-flight check: `python -m app.startup` (exit 0, or one line and exit 3)."""
    checked_app()


if __name__ == "__main__":
    main()
