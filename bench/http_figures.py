"""Throughput figures, driven by wrk: Tally's hot paths against bare endpoints, and sizing.

Part `http` (issue 7, targets 1 and 2), every server one uvicorn worker, wrk -t1 -c32:
  POST update of a 32-sample JSON batch to a `Precision` session (Redis; Redis with a fresh
  Idempotency-Key per request; the in-memory store) against the bare POST of bench/bare_app.py,
  and GET result against the bare constant GET. All servers run side by side and the runs
  alternate baseline / Tally, so drift on a shared machine hits both.

Part `sizing`: update throughput with 1, 2 and 4 uvicorn workers and with 2 Tally processes on
one Redis (ratio to 1 worker), Redis' CPU per update at each point (the ceiling of one hot
session is one Redis core), and batch sizes 32 ... 65,536 as JSON and `.npz`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx

from bench.bodies import JSON, NPZ, BodyFiles
from bench.report import Row, rate
from bench.servers import (
    Server,
    fast_stack_loaded,
    private_redis,
    redis_cpu_seconds,
    serving,
)
from bench.wrk_runner import (
    RUN_ID,
    Load,
    WrkResult,
    combined,
    run_measured,
    run_parallel,
    warm_up,
)
from tests.redis_servers import RedisProcess

SESSION = "bench"
SMALL_BATCH = 32
BATCH_SIZES = (32, 512, 8192, 65536)
TALLY = "app.main:app"
BARE = "bench.bare_app:app"


def update_url(server: Server, session: str = SESSION) -> str:
    return f"{server.url}/v1/sessions/{session}/update"


def result_url(server: Server, session: str = SESSION) -> str:
    return f"{server.url}/v1/sessions/{session}/result"


def create_session(server: Server, session: str = SESSION, metric: str = "Precision") -> None:
    r = httpx.put(f"{server.url}/v1/sessions/{session}", json={"metric": metric}, timeout=30)
    if r.status_code not in (200, 201):
        raise RuntimeError(f"creating {session} on {server.name}: {r.status_code} {r.text}")


def check_fast_stack(servers: list[Server]) -> str:
    """Every worker must really run uvloop + httptools, or the comparison means nothing."""
    missing = [s.name for s in servers if not fast_stack_loaded(s)]
    if missing:
        raise RuntimeError(f"uvloop/httptools not loaded in: {', '.join(missing)}")
    return "uvloop + httptools loaded in every worker (checked in /proc/<pid>/maps)"


def measure_once(server: Server, url: str, script: str, args: list[str], load: Load,
                 redis: RedisProcess | None = None) -> WrkResult:
    """One measured wrk run with the server's (and Redis') CPU time; errors are fatal."""
    redis_cpu: Callable[[], float] = (lambda: redis_cpu_seconds(redis)) if redis else (
        lambda: 0.0)
    result = run_measured(url, script, args, load, server.cpu_seconds, redis_cpu)
    if result.failed:
        raise RuntimeError(f"{server.name}: {result.errors} errors during {url}")
    return result


def measure(server: Server, url: str, script: str, args: list[str], load: Load,
            redis: RedisProcess | None = None) -> WrkResult:
    """A warm-up, then one measured wrk run."""
    warm_up(url, script, args, load)
    return measure_once(server, url, script, args, load, redis)


@dataclass
class Target:
    """One URL of one server that a figure loads with one script."""

    server: Server
    url: str
    script: str
    args: list[str]
    redis: RedisProcess | None = None

    def run(self, load: Load) -> WrkResult:
        return measure_once(self.server, self.url, self.script, self.args, load, self.redis)


def interleaved(targets: dict[str, Target], load: Load, rounds: int) -> dict[str, list[WrkResult]]:
    """Every target once per round, in order, after one warm-up each: a baseline and the
    Tally route it is compared with run seconds apart, so drift of a shared machine (other
    jobs starting and stopping) hits both alike; the rounds show how much it moved."""
    for target in targets.values():
        warm_up(target.url, target.script, target.args, load)
    runs: dict[str, list[WrkResult]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, target in targets.items():
            runs[name].append(target.run(load))
    return runs


def pooled(runs: list[WrkResult]) -> WrkResult:
    """Several runs of one target as one: requests, seconds and CPU add up; the latencies are
    those of the run with the median rate."""
    middle = sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
    return WrkResult(requests=sum(r.requests for r in runs), seconds=sum(r.seconds for r in runs),
                     errors=middle.errors, latency_us=middle.latency_us,
                     wrk_cpu_seconds=sum(r.wrk_cpu_seconds for r in runs),
                     server_cpu_seconds=sum(r.server_cpu_seconds for r in runs),
                     redis_cpu_seconds=sum(r.redis_cpu_seconds for r in runs))


def run_note(result: WrkResult) -> str:
    """Latency, the server's CPU per request, and wrk's own CPU (it must stay under a core)."""
    lat = result.latency_us
    note = (f"p50 {lat['p50'] / 1e3:.1f} ms, p99 {lat['p99'] / 1e3:.1f} ms; server CPU "
            f"{result.server_cpu_us_per_request():.0f} us/req; wrk CPU "
            f"{100 * result.wrk_cpu_share:.0f}% of a core")
    if result.redis_cpu_seconds:
        note += f"; Redis CPU {result.redis_cpu_us_per_request():.0f} us/req"
    return note


def ratio_row(figure: str, tally_runs: list[WrkResult], baseline_runs: list[WrkResult],
              baseline_name: str, goal: str = "", part: str = "http") -> Row:
    """The median over rounds of Tally's rate / the baseline's rate in the same round."""
    tally, baseline = pooled(tally_runs), pooled(baseline_runs)
    ratios = sorted(t.rate / b.rate for t, b in zip(tally_runs, baseline_runs, strict=True))
    note = (f"rounds {len(ratios)}, ratio range {ratios[0]:.2f}-{ratios[-1]:.2f} | Tally: "
            f"{run_note(tally)} | baseline: {run_note(baseline)}")
    cpu_ratio = tally.server_cpu_us_per_request() / max(baseline.server_cpu_us_per_request(), 1)
    return Row(part, figure, rate(tally.rate), f"{rate(baseline.rate)} ({baseline_name})",
               statistics.median(ratios), goal, note, cpu_ratio)


@contextmanager
def tally_on_redis(redis: RedisProcess, env: dict[str, str], workers: int = 1,
                   name: str = "tally redis") -> Iterator[Server]:
    with serving(name, TALLY, {"TALLY_REDIS_URL": redis.url, **env}, workers) as server:
        yield server


def http_part(load: Load, env: dict[str, str], rounds: int = 3) -> list[Row]:
    """Targets 1 and 2 of issue 7: update and read against the bare endpoints."""
    bodies = BodyFiles()
    post = [bodies.path(SMALL_BATCH, JSON), JSON]
    with private_redis() as redis, ExitStack() as stack:
        bare = stack.enter_context(serving("bare", BARE, {}))
        on_redis = stack.enter_context(tally_on_redis(redis, env))
        # The same, computing every update alone: what merged updates (app/merging.py) buy.
        unmerged = stack.enter_context(tally_on_redis(
            redis, {**env, "TALLY_MERGE_UPDATES": "1"}, name="tally redis unmerged"))
        in_memory = stack.enter_context(serving("tally memory", TALLY, env))
        fast_stack = check_fast_stack([bare, on_redis, unmerged, in_memory])
        for server in (on_redis, unmerged, in_memory):
            create_session(server)
        runs = interleaved({
            "bare POST": Target(bare, update_url(bare), "post_body.lua", post),
            "redis POST": Target(on_redis, update_url(on_redis), "post_body.lua", post, redis),
            "unmerged POST": Target(unmerged, update_url(unmerged), "post_body.lua", post,
                                    redis),
            "memory POST": Target(in_memory, update_url(in_memory), "post_body.lua", post),
            "redis keyed POST": Target(on_redis, update_url(on_redis), "post_idempotent.lua",
                                       [*post, RUN_ID], redis),
            "bare GET": Target(bare, result_url(bare), "get.lua", []),
            "redis GET": Target(on_redis, result_url(on_redis), "get.lua", [], redis),
            "memory GET": Target(in_memory, result_url(in_memory), "get.lua", []),
        }, load, rounds)
    bodies.close()
    what = f"{SMALL_BATCH}-sample JSON, Precision, 1 worker, {load.describe()}"
    rows = [
        ratio_row(f"POST update, Redis ({what})", runs["redis POST"], runs["bare POST"],
                  "bare POST", ">= 0.8x"),
        ratio_row("POST update, Redis, every update computed alone (TALLY_MERGE_UPDATES=1)",
                  runs["unmerged POST"], runs["bare POST"], "bare POST"),
        ratio_row("POST update, Redis, own Idempotency-Key per request",
                  runs["redis keyed POST"], runs["bare POST"], "bare POST"),
        ratio_row("POST update, in-memory store", runs["memory POST"], runs["bare POST"],
                  "bare POST"),
        ratio_row(f"GET result, Redis, Precision ({load.describe()})", runs["redis GET"],
                  runs["bare GET"], "bare GET", ">= 0.8x"),
        ratio_row("GET result, in-memory store", runs["memory GET"], runs["bare GET"],
                  "bare GET"),
    ]
    rows[0].note = fast_stack + " | " + rows[0].note
    return rows


def workers_rows(redis: RedisProcess, post: list[str], load: Load,
                 env: dict[str, str]) -> list[tuple[str, WrkResult]]:
    """Update throughput of one hot session with 1, 2 and 4 uvicorn workers."""
    runs = []
    for workers in (1, 2, 4):
        with tally_on_redis(redis, env, workers, f"tally {workers} workers") as server:
            check_fast_stack([server])
            create_session(server, "hot")
            runs.append((f"{workers} worker{'s' * (workers > 1)}",
                         measure(server, update_url(server, "hot"), "post_body.lua", post,
                                 load, redis)))
    return runs


def two_processes(redis: RedisProcess, post: list[str], load: Load,
                  env: dict[str, str]) -> WrkResult:
    """Two Tally processes (1 worker each) on one Redis, one wrk each with half the
    connections, all on the same hot session."""
    half = Load(load.threads, max(load.connections // 2, 1), load.seconds, load.timeout_seconds)
    with tally_on_redis(redis, env, 1, "tally A") as a, tally_on_redis(redis, env, 1,
                                                                         "tally B") as b:
        check_fast_stack([a, b])
        create_session(a, "hot")
        urls = [update_url(a, "hot"), update_url(b, "hot")]
        for url in urls:
            warm_up(url, "post_body.lua", post, half)
        cpu_before = a.cpu_seconds() + b.cpu_seconds(), redis_cpu_seconds(redis)
        result = combined(run_parallel(urls, "post_body.lua", post, half))
        result.server_cpu_seconds = a.cpu_seconds() + b.cpu_seconds() - cpu_before[0]
        result.redis_cpu_seconds = redis_cpu_seconds(redis) - cpu_before[1]
    if result.failed:
        raise RuntimeError(f"2 processes: {result.errors} errors")
    return result


def hot_session_row(label: str, result: WrkResult, one_worker: WrkResult) -> Row:
    redis_share = result.redis_cpu_seconds / result.seconds
    per_update = result.redis_cpu_us_per_request()
    ceiling = 1e6 / per_update if per_update else float("inf")
    note = (f"{run_note(result)}; Redis busy {100 * redis_share:.0f}% of a core, so one hot "
            f"session saturates its Redis near {ceiling:,.0f} updates/s")
    return Row("sizing", f"updates of one hot session, {label}", rate(result.rate),
               f"{rate(one_worker.rate)} (1 worker)", result.rate / one_worker.rate, "", note)


def batch_rows(redis: RedisProcess, bodies: BodyFiles, load: Load,
               env: dict[str, str]) -> list[Row]:
    """Samples/s for batch sizes 32 ... 65,536, JSON and `.npz` (ratio: npz to JSON)."""
    rows = []
    with tally_on_redis(redis, env, 1, "tally batches") as server:
        create_session(server, "batches")
        url = update_url(server, "batches")
        for samples in BATCH_SIZES:
            runs = {kind: measure(server, url, "post_body.lua", [bodies.path(samples, kind), kind],
                                  load, redis) for kind in (JSON, NPZ)}
            json_rate, npz_rate = (runs[k].rate * samples for k in (JSON, NPZ))
            rows.append(Row("sizing", f"{samples:,}-sample batches, .npz ({load.describe()})",
                            rate(npz_rate, "samples/s"), f"{rate(json_rate, 'samples/s')} (JSON)",
                            npz_rate / json_rate, "",
                            f"npz: {rate(runs[NPZ].rate)}, {run_note(runs[NPZ])} | JSON: "
                            f"{rate(runs[JSON].rate)}, {run_note(runs[JSON])}"))
    return rows


def sizing_part(load: Load, env: dict[str, str]) -> list[Row]:
    bodies = BodyFiles()
    post = [bodies.path(SMALL_BATCH, JSON), JSON]
    batch_load = Load(load.threads, 4, max(load.seconds - 1, 2), load.timeout_seconds)
    with private_redis() as redis:
        runs = workers_rows(redis, post, load, env)
        runs.append(("2 processes x 1 worker", two_processes(redis, post, load, env)))
        rows = [hot_session_row(label, result, runs[0][1]) for label, result in runs]
        rows += batch_rows(redis, bodies, batch_load, env)
    bodies.close()
    return rows
