"""Run `wrk` (the C load generator) with a Lua script from bench/wrk/ and parse its report.

Every script there ends a run by printing one line `WRK_JSON {...}` (bench/wrk/report.lua):
requests, duration, errors and latency percentiles in microseconds, exact rather than wrk's
rounded text. Besides that report, a run records the CPU time wrk itself used, so a figure can
show that the load generator was not the bottleneck (well under one core per wrk thread).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).parent / "wrk"
MARKER = "WRK_JSON "


@dataclass(frozen=True)
class Load:
    """How wrk drives a run: its threads, connections and the measured seconds (wrk takes
    whole seconds)."""

    threads: int = 1
    connections: int = 32
    seconds: int = 4
    timeout_seconds: int = 30

    def describe(self) -> str:
        return f"wrk -t{self.threads} -c{self.connections} -d{self.seconds}s"


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_us: dict[str, float]
    wrk_cpu_seconds: float
    server_cpu_seconds: float = 0.0
    redis_cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def wrk_cpu_share(self) -> float:
        """wrk's CPU time per second of run: 1.0 would be one core, fully busy."""
        return self.wrk_cpu_seconds / self.seconds

    def server_cpu_us_per_request(self) -> float:
        return 1e6 * self.server_cpu_seconds / max(self.requests, 1)

    def redis_cpu_us_per_request(self) -> float:
        return 1e6 * self.redis_cpu_seconds / max(self.requests, 1)


def wrk_binary() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed; `make bench` installs it "
                           "(apt-get install -y wrk)")
    return binary


#: A script argument that becomes a fresh id in every wrk run (post_idempotent.lua's RUN_ID:
#: the warm-up and the measured run must not send the same Idempotency-Keys).
RUN_ID = "{run}"


def wrk_command(url: str, script: str, args: Sequence[str], load: Load) -> list[str]:
    run_id = uuid.uuid4().hex[:12]
    return [wrk_binary(), f"-t{load.threads}", f"-c{load.connections}",
            f"-d{load.seconds}s", f"--timeout={load.timeout_seconds}s",
            "-s", str(SCRIPTS / script), url, "--", *(a.replace(RUN_ID, run_id) for a in args)]


def parse_report(stdout: str) -> dict[str, object]:
    """The JSON object of the `WRK_JSON` line wrk's `done` printed."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            report: dict[str, object] = json.loads(line[len(MARKER):])
            return report
    raise RuntimeError(f"wrk printed no {MARKER.strip()} line:\n{stdout[-2000:]}")


def result_from_report(report: dict[str, object], wrk_cpu_seconds: float) -> WrkResult:
    errors = report["errors"]
    latency = report["latency_us"]
    assert isinstance(errors, dict) and isinstance(latency, dict)
    duration = report["duration_us"]
    requests = report["requests"]
    assert isinstance(duration, int) and isinstance(requests, int)
    return WrkResult(requests=requests, seconds=duration / 1e6, errors=errors,
                     latency_us=latency, wrk_cpu_seconds=wrk_cpu_seconds)


def run_wrk(url: str, script: str, args: Sequence[str], load: Load) -> WrkResult:
    """One wrk run; its CPU time comes from the kernel's accounting of the child (wait4)."""
    process = subprocess.Popen(wrk_command(url, script, args, load), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{stdout[-2000:]}")
    return result_from_report(parse_report(stdout), usage.ru_utime + usage.ru_stime)


def run_measured(url: str, script: str, args: Sequence[str], load: Load,
                 server_cpu: Callable[[], float],
                 redis_cpu: Callable[[], float] = lambda: 0.0) -> WrkResult:
    """One wrk run, with the server's and Redis' CPU time over it."""
    server_before, redis_before = server_cpu(), redis_cpu()
    result = run_wrk(url, script, args, load)
    result.server_cpu_seconds = server_cpu() - server_before
    result.redis_cpu_seconds = redis_cpu() - redis_before
    return result


def run_parallel(urls: Sequence[str], script: str, args: Sequence[str],
                 load: Load) -> list[WrkResult]:
    """One wrk per URL at the same time (each with `load`): two servers, one load each."""
    with ThreadPoolExecutor(len(urls)) as pool:
        futures = [pool.submit(run_wrk, url, script, args, load) for url in urls]
        return [f.result() for f in futures]


def combined(results: Sequence[WrkResult]) -> WrkResult:
    """Results of simultaneous runs as one: requests add up over the longest duration."""
    errors: dict[str, int] = {}
    for r in results:
        for kind, count in r.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    worst = max(results, key=lambda r: r.latency_us["p99"])
    return WrkResult(requests=sum(r.requests for r in results),
                     seconds=max(r.seconds for r in results), errors=errors,
                     latency_us=worst.latency_us,
                     wrk_cpu_seconds=sum(r.wrk_cpu_seconds for r in results))


def warm_up(url: str, script: str, args: Sequence[str], load: Load, seconds: int = 1) -> None:
    """A short unmeasured run first: caches, connection pools and lazy imports settle."""
    run_wrk(url, script, args, Load(load.threads, load.connections, seconds,
                                    load.timeout_seconds))
    time.sleep(0.2)
