"""The `tally` command: serve the API, print its schema, and look at sessions from a terminal.

    tally serve [--host H] [--port P] [--workers N]   the start-up checks, then uvicorn
    tally openapi                                     the OpenAPI document, as JSON
    tally ls [PREFIX]                                 sessions, their metric, epoch and result
    tally show NAME                                   document, variables and history
    tally reset NAME [--epoch N]                      close the epoch (only at epoch N)
    tally update NAME --file batch.npz|batch.json     send one batch

The terminal commands talk to a running service over HTTP (`--url`, env `TALLY_URL`, default
http://127.0.0.1:8000; `--token`, env `TALLY_TOKEN`). An error answer is printed as its problem
document's status, title and detail. Exit status: 0 done, 1 the service answered with an error
or could not be reached, 2 a usage error (bad option, unreadable file), 3 `serve` refused to
start (the same one line and status as `uvicorn app.main:app`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging.config
import math
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    from fastapi import FastAPI

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_ERROR = 1
EXIT_USAGE = 2
REQUEST_TIMEOUT_SECONDS = 60.0
PAGE_LIMIT = 1000
NPZ = "application/x-npz"
CELL_WIDTH = 60  # the widest a result or variable value is printed in a table


class CommandError(Exception):
    """What went wrong, as printed after `tally: `, and the exit status."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


# -- serve ---------------------------------------------------------------------------------
def _env_int(variable: str, default: int) -> int:
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise CommandError(f"{variable} should be a positive integer; got {value!r}",
                           EXIT_USAGE)
    return int(value)


def log_config() -> dict[str, Any]:
    """uvicorn's logging, plus Tally's own logger at INFO (plugins loaded, warnings at start),
    printed like uvicorn's lines."""
    from uvicorn.config import LOGGING_CONFIG

    config = deepcopy(LOGGING_CONFIG)
    config["loggers"]["tally"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def preflight(workers: int) -> FastAPI:
    """The start-up checks of `app.main` for `workers` processes, in this process: a
    configuration that cannot serve ends it with one line and status 3 before any worker
    starts. Returns the checked app (served as is by a single worker)."""
    from app.api.app import create_app
    from app.errors import ConfigError
    from app.startup import (
        Serving,
        StartupRefused,
        check_processes,
        check_redis_mode,
        load_settings,
        refuse,
    )

    try:
        settings = load_settings()
        check_processes(settings, Serving(workers))
        check_redis_mode(settings)
        return create_app(settings)
    except StartupRefused as exc:
        refuse(str(exc), Serving(1))
    except ConfigError as exc:  # a plugin that does not load
        refuse(exc.detail, Serving(1))


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    host = args.host or os.environ.get("UVICORN_HOST") or "127.0.0.1"
    port = args.port or _env_int("UVICORN_PORT", 8000)
    workers = args.workers or _env_int("WEB_CONCURRENCY", 1)
    config = log_config()
    logging.config.dictConfig(config)
    app = preflight(workers)
    http = http_protocol()
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_config=config, http=http)
    else:  # each worker process imports app.main, which runs the same checks again
        uvicorn.run("app.main:app", host=host, port=port, workers=workers, log_config=config,
                    http=http)
    return 0


def http_protocol() -> str:
    """Tally's HTTP protocol (app/http_protocol.py: uvicorn's httptools protocol, a response
    sent in one write) when httptools is installed, else uvicorn's own choice."""
    if importlib.util.find_spec("httptools") is None:
        return "auto"
    return "app.http_protocol:HttpToolsProtocol"


def openapi(_: argparse.Namespace) -> int:
    from app.openapi import document

    sys.stdout.write(document())
    return 0


# -- talking to a service ------------------------------------------------------------------
def client(args: argparse.Namespace) -> httpx.Client:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    return httpx.Client(base_url=args.url.rstrip("/"), headers=headers,
                        timeout=REQUEST_TIMEOUT_SECONDS)


def session_path(name: str, *rest: str) -> str:
    return "/".join(["/v1/sessions", quote(name, safe=""), *rest])


def problem_text(response: httpx.Response) -> str:
    """`404 Not Found: <detail>` from a problem document (with any extra members, such as
    `current_epoch`), or the status and the start of whatever body came instead."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "detail" not in body:
        text = response.text.strip()[:300]
        return f"{response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")
    title = body.get("title") or response.reason_phrase
    extra = {k: v for k, v in body.items() if k not in ("type", "title", "status", "detail")}
    more = "".join(f" ({key}: {json.dumps(value)})" for key, value in extra.items())
    return f"{response.status_code} {title}: {body['detail']}{more}"


def call(http: httpx.Client, method: str, path: str, *, retry_hint: str = "",
         **kwargs: Any) -> Any:
    """One request; its JSON answer, or `CommandError` with the problem or the network
    failure. `retry_hint` is added where the outcome is unknown (504, lost connection)."""
    try:
        response = http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        where = f"{http.base_url}"
        raise CommandError(f"cannot reach {where} ({type(exc).__name__}: {exc}); is the "
                           f"service running (`tally serve`), and is --url / TALLY_URL "
                           f"right?{retry_hint}") from None
    if response.is_error:
        hint = retry_hint if response.status_code == 504 else ""
        raise CommandError(problem_text(response) + hint)
    return response.json() if response.content else None


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return json.dumps(value)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value)) + ".0"
    return f"{value:.6g}"


def shown(value: Any, width: int = CELL_WIDTH) -> str:
    """A result or variable value on one line: numbers to 6 significant digits, nested lists
    as compact JSON, a collection's results as `member=value`, cut at `width` characters."""
    if isinstance(value, dict):
        text = ", ".join(f"{k}={shown(v, width)}" for k, v in value.items())
    elif isinstance(value, list):
        text = "[" + ", ".join(shown(v, width) for v in value) + "]"
    elif value is None:
        text = "null"
    else:
        text = number(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def table(rows: Sequence[Sequence[str]], indent: str = "") -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths,
                                                                          strict=True)).rstrip()
                     for row in rows)


def metric_of(summary: dict[str, Any]) -> str:
    """The class name, or a collection's member classes joined with `+`."""
    if "metric" in summary:
        return str(summary["metric"])
    return "+".join(summary.get("metrics", [])) or "?"


# -- ls, show, reset, update ---------------------------------------------------------------
def list_sessions(args: argparse.Namespace) -> int:
    rows = [("NAME", "METRIC", "EPOCH", "RESULT")]
    cursor = None
    with client(args) as http:
        while True:
            params: dict[str, Any] = {"prefix": args.prefix, "limit": PAGE_LIMIT}
            if cursor is not None:
                params["cursor"] = cursor
            page = call(http, "GET", "/v1/sessions", params=params)
            rows += [(s["name"], metric_of(s), str(s["epoch"]), shown(s.get("result")))
                     for s in page["sessions"]]
            cursor = page.get("next_cursor")
            if cursor is None:
                break
    if len(rows) == 1:
        where = f" whose name starts with {args.prefix!r}" if args.prefix else ""
        print(f"no sessions{where}", file=sys.stderr)
        return 0
    print(table(rows))
    return 0


def show_session(args: argparse.Namespace) -> int:
    with client(args) as http:
        document = call(http, "GET", session_path(args.name))
        variables = call(http, "GET", session_path(args.name, "variables"))["variables"]
        history = call(http, "GET", session_path(args.name, "history"))["epochs"]
    fields = [("name", document["name"]), ("metric", metric_of(document)),
              ("epoch", str(document["epoch"])), ("result", shown(document.get("result"))),
              ("created", str(document.get("created_at", "-")))]
    if document.get("ttl_seconds") is not None:
        fields.append(("ttl", f"{document['ttl_seconds']} s after the last write"))
    fields.append(("config", json.dumps(document.get("config"))))
    print(table(fields))
    print("\nvariables")
    if variables:
        print(table([(v["name"], json.dumps(v["shape"]), v["dtype"], shown(v["value"]))
                     for v in variables], indent="  "))
    else:
        print("  none yet (this metric shapes its variables on the first batch)")
    print(f"\nhistory ({len(history)} closed epoch{'' if len(history) == 1 else 's'})")
    if history:
        print(table([("EPOCH", "CLOSED", "RESULT")]
                    + [(str(e["epoch"]), e["closed_at"], shown(e["result"])) for e in history],
                    indent="  "))
    return 0


def reset_session(args: argparse.Namespace) -> int:
    body = {"epoch": args.epoch} if args.epoch is not None else None
    with client(args) as http:
        answer = call(http, "POST", session_path(args.name, "reset"), json=body)
    closed = answer["closed"]
    print(f"{args.name}: closed epoch {closed['epoch']} (result {shown(closed['result'])}); "
          f"now at epoch {answer['epoch']}")
    return 0


def batch_request(path: Path, epoch: int | None) -> dict[str, Any]:
    """The request arguments for a batch file: `.npz` as is (epoch as a query parameter),
    `.json` as an object (epoch added to it)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from None
    suffix = path.suffix.lower()
    if suffix == ".npz":
        params = {"epoch": epoch} if epoch is not None else {}
        return {"content": data, "headers": {"Content-Type": NPZ}, "params": params}
    if suffix == ".json":
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise CommandError(f"{path} is not JSON: {exc}", EXIT_USAGE) from None
        if not isinstance(body, dict):
            raise CommandError(f"{path} should hold a JSON object such as "
                               '{"y_true": [...], "y_pred": [...]}', EXIT_USAGE)
        return {"json": body if epoch is None else {**body, "epoch": epoch}}
    raise CommandError(f"--file should end in .npz or .json; got {path.name!r}", EXIT_USAGE)


def update_session(args: argparse.Namespace) -> int:
    request = batch_request(Path(args.file), args.epoch)
    key = args.idempotency_key or uuid.uuid4().hex
    request.setdefault("headers", {})["Idempotency-Key"] = key
    hint = (f"; it may have been applied: run the same command with --idempotency-key {key} "
            "to retry without counting it twice")
    with client(args) as http:
        answer = call(http, "POST", session_path(args.name, "update"), retry_hint=hint,
                      **request)
    print(f"{args.name}: applied {answer['samples']} samples to epoch {answer['epoch']}")
    return 0


# -- the parser ----------------------------------------------------------------------------
def _connection_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--url", default=os.environ.get("TALLY_URL", DEFAULT_URL),
                         help="the service (env TALLY_URL; default %(default)s)")
    options.add_argument("--token", default=os.environ.get("TALLY_TOKEN"),
                         help="a bearer token of TALLY_TOKENS (env TALLY_TOKEN)")
    return options


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tally", description="Keras-exact streaming metrics "
                                  "as a service. The HTTP contract is docs/API.md.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    connection = _connection_options()

    run = commands.add_parser("serve", help="serve the API (start-up checks, then uvicorn)")
    run.add_argument("--host", help="default: UVICORN_HOST or 127.0.0.1")
    run.add_argument("--port", type=int, help="default: UVICORN_PORT or 8000")
    run.add_argument("--workers", type=int, help="processes (default: WEB_CONCURRENCY or 1; "
                     "more than 1 needs TALLY_REDIS_URL)")
    run.set_defaults(handler=serve)

    commands.add_parser("openapi", help="print the OpenAPI document").set_defaults(
        handler=openapi)

    ls = commands.add_parser("ls", parents=[connection], help="list sessions")
    ls.add_argument("prefix", nargs="?", default="", metavar="PREFIX",
                    help="only names starting with it (e.g. run42.)")
    ls.set_defaults(handler=list_sessions)

    show = commands.add_parser("show", parents=[connection],
                               help="a session: document, result, variables, history")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(handler=show_session)

    reset = commands.add_parser("reset", parents=[connection],
                                help="close the current epoch and open the next")
    reset.add_argument("name", metavar="NAME")
    reset.add_argument("--epoch", type=int, help="only if the session is at this epoch")
    reset.set_defaults(handler=reset_session)

    update = commands.add_parser("update", parents=[connection], help="send one batch")
    update.add_argument("name", metavar="NAME")
    update.add_argument("--file", required=True, help="a .npz with arrays y_true, y_pred "
                        "(or values), sample_weight; or a .json object with those fields")
    update.add_argument("--epoch", type=int, help="apply only at this epoch")
    update.add_argument("--idempotency-key", help="to retry a batch whose answer was lost")
    update.set_defaults(handler=update_session)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CommandError as exc:
        print(f"tally: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
