"""Every benchmark of issue 7 in one run, as one table of ratios to same-run baselines.

    python -m bench.run_all                      # everything (`make bench`), ~4 minutes
    python -m bench.run_all --only http,engine   # some parts
    python -m bench.run_all --seconds 2 --markdown --env TALLY_SOME_SETTING=1

Parts: http (update and read against bare endpoints, wrk), listing, large (1M-sample npz vs
JSON), memory (Redis bytes of AUC(200)), engine (AUC math vs Keras), largest (full
MeanIoU(2048)), sizing (workers, processes, batch sizes, one hot session's Redis CPU).

Servers are started here from the code checked out, each its own uvicorn process with one
worker unless a row says otherwise, on a private redis-server. The machine is shared: only the
ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench import http_figures, latency_figures, storage_figures
from bench.report import Row, markdown_table, text_table
from bench.wrk_runner import Load, wrk_binary

Part = Callable[[Load, dict[str, str]], list[Row]]

PARTS: dict[str, Part] = {
    "http": http_figures.http_part,
    "listing": lambda load, env: latency_figures.listing_part(env),
    "large": lambda load, env: latency_figures.large_part(env),
    "memory": lambda load, env: storage_figures.memory_part(env),
    "engine": lambda load, env: storage_figures.engine_part(env),
    "largest": lambda load, env: storage_figures.largest_part(env),
    "sizing": http_figures.sizing_part,
}


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("TALLY_"):
            raise SystemExit(f"--env takes TALLY_NAME=value, not {pair!r}")
        env[key] = value
    return env


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts (default all): {', '.join(PARTS)}")
    parser.add_argument("--seconds", type=int, default=4,
                        help="measured seconds of each wrk run (after a 1 s warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--env", action="append", default=[],
                        help="TALLY_NAME=value for every Tally server (repeatable)")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    return args


def commit() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    wrk_version = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True).stdout
    return (f"{platform.node()}, {platform.machine()}, Python {platform.python_version()}, "
            f"{wrk_version.splitlines()[0] if wrk_version else 'wrk'}")


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    load = Load(args.threads, args.connections, args.seconds)
    env = parse_env(args.env)
    started = time.monotonic()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}, {machine()}")
    print(f"command: {' '.join(['python -m bench.run_all', *(argv or sys.argv[1:])])}")
    rows: list[Row] = []
    for name in args.only.split(","):
        began = time.monotonic()
        part_rows = PARTS[name](load, env)
        rows += part_rows
        print(f"[{name}: {time.monotonic() - began:.0f} s]\n{text_table(part_rows)}\n",
              flush=True)
    print(f"== all parts ({time.monotonic() - started:.0f} s) ==\n{text_table(rows)}")
    if args.markdown:
        print("\n" + markdown_table(rows))


if __name__ == "__main__":
    main()
