"""Every benchmark of issue 7 in one run, as one table of ratios to same-run baselines.

    python -m bench.run_all                      # everything (`make bench`), ~4-5 minutes
    python -m bench.run_all --only http,engine   # some parts
    python -m bench.run_all --seconds 2 --rounds 1 --markdown --env TALLY_SOME_SETTING=1

Parts: http (update and read against bare endpoints, wrk), listing, large (1M-sample npz vs
JSON), memory (Redis bytes of AUC(200)), engine (AUC math vs Keras), largest (full
MeanIoU(2048)), sizing (workers, processes, batch sizes, one hot session's Redis CPU).

Servers are started here from the code checked out, each its own uvicorn process with one
worker unless a row says otherwise, on a private redis-server. The machine is shared: only the
ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bench import http_figures, latency_figures, storage_figures
from bench.report import Row, markdown_table, text_table
from bench.wrk_runner import Load, wrk_binary


@dataclass(frozen=True)
class Options:
    load: Load
    env: dict[str, str]  # TALLY_ settings for every Tally server
    rounds: int  # interleaved rounds of the http part


Part = Callable[[Options], list[Row]]

PARTS: dict[str, Part] = {
    "http": lambda o: http_figures.http_part(o.load, o.env, o.rounds),
    "listing": lambda o: latency_figures.listing_part(o.env),
    "large": lambda o: latency_figures.large_part(o.env),
    "memory": lambda o: storage_figures.memory_part(o.env),
    "engine": lambda o: storage_figures.engine_part(o.env),
    "largest": lambda o: storage_figures.largest_part(o.env),
    "sizing": lambda o: http_figures.sizing_part(o.load, o.env),
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
    parser.add_argument("--seconds", type=int, default=3,
                        help="measured seconds of each wrk run (after a 1 s warm-up)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of the http part (ratio: their median)")
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
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, load average "
            f"{load}, Python {platform.python_version()}, "
            f"{wrk_version.split(' Copyright')[0] if wrk_version else 'wrk'}")


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    options = Options(Load(args.threads, args.connections, args.seconds), parse_env(args.env),
                      args.rounds)
    started = time.monotonic()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}, {machine()}")
    print(f"command: {' '.join(['python -m bench.run_all', *(argv or sys.argv[1:])])}")
    rows: list[Row] = []
    for name in args.only.split(","):
        began = time.monotonic()
        part_rows = PARTS[name](options)
        rows += part_rows
        print(f"[{name}: {time.monotonic() - began:.0f} s]\n{text_table(part_rows)}\n",
              flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"== all parts ({time.monotonic() - started:.0f} s; load average now {load}) ==\n"
          f"{text_table(rows)}")
    if args.markdown:
        print("\n" + markdown_table(rows))


if __name__ == "__main__":
    main()
