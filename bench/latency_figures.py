"""Latency figures, timed from a Python client (httpx): one request or one sequence at a time,
so the client waits on the server and is not the bottleneck (these are times, not rates).

Part `listing` (issue 7, target 4): listing 1,000 sessions with their results, following
`next_cursor` with `limit=1000`, against one `GET .../result`, both medians on one server.

Part `large` (target 3): one 1,000,000-sample `AUC` update as `.npz` against the same batch
as JSON, end to end (bodies encoded beforehand; the time covers sending, decoding, the AUC
math, the store and the answer); best of a few, as samples/s. A second row is the transport
floor: the same `.npz` body POSTed to the bare app's endpoint that only reads it, next to the
time the 10x goal allows (JSON time / 10), so the table says whether the goal is reachable on
this stack at all.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import orjson

from bench.bodies import JSON, NPZ, body
from bench.http_figures import BARE
from bench.report import Row, millis, rate
from bench.servers import Server, private_redis, serving

TALLY = "app.main:app"
LISTED = 1000
LARGE_BATCH = 1_000_000


def timed(call: Callable[[], httpx.Response]) -> float:
    began = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - began
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return elapsed


BATCH = {"y_true": [0, 1, 1, 0], "y_pred": [0.2, 0.8, 0.4, 0.9]}


def populate(client: httpx.Client, prefix: str, count: int) -> None:
    """`count` Precision sessions, each with one batch, so every listed result is computed
    (8 client threads: setting up is not measured)."""
    def create(name: str) -> None:
        timed(lambda: client.put(f"/v1/sessions/{name}", json={"metric": "Precision"}))
        timed(lambda: client.post(f"/v1/sessions/{name}/update", json=BATCH))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, (f"{prefix}{i:04d}" for i in range(count))))


def touch_all(client: httpx.Client, prefix: str, count: int) -> None:
    """One more batch to each session (8 client threads, not measured): every state changes,
    so the next listing has no cached result to use."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: timed(lambda: client.post(
            f"/v1/sessions/{prefix}{i:04d}/update", json=BATCH)), range(count)))


def list_all(client: httpx.Client, prefix: str) -> int:
    """Follow `next_cursor` to the end; return how many sessions the pages held."""
    seen, cursor = 0, None
    while True:
        params: dict[str, str | int] = {"prefix": prefix, "limit": LISTED}
        if cursor:
            params["cursor"] = cursor
        r = client.get("/v1/sessions", params=params)
        if r.status_code != 200:
            raise RuntimeError(f"listing: {r.status_code} {r.text}")
        # orjson, not httpx's stdlib json: the client's parse of a 1,000-session page (~1.4
        # against ~0.3 ms) is not the server's work (the GET it is compared with parses nothing)
        page = orjson.loads(r.content)
        seen += len(page["sessions"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


@dataclass
class Timing:
    """Wall time and the server's CPU time of repeated calls (CPU time is the steadier figure
    on a shared machine: other jobs stretch the wall clock, not the work done)."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)

    def record(self, server: Server, call: Callable[[], object]) -> None:
        cpu, began = server.cpu_seconds(), time.perf_counter()
        call()
        self.seconds.append(time.perf_counter() - began)
        self.cpu_seconds.append(server.cpu_seconds() - cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def cpu_mean(self) -> float:
        return statistics.fmean(self.cpu_seconds)


def repeated(server: Server, call: Callable[[], object], repeat: int) -> Timing:
    timing = Timing()
    for _ in range(repeat):
        timing.record(server, call)
    return timing


#: Rounds of the listing part, each: a batch to every session, the listing right after (cold),
#: the same listing again (relisting), then GETs: the machine's mood moves all three alike.
LISTING_ROUNDS = 9
GETS_PER_ROUND = 30


def listing_rows(server: Server) -> list[Row]:
    """The listing figures against one `GET .../result`, the three interleaved round by round
    (on a shared machine the speed drifts within a run: a GET measured once, before, would
    divide later listings by another machine's latency); medians over every round."""
    prefix = "list."
    limits = httpx.Limits(max_connections=8)
    one = f"/v1/sessions/{prefix}0000/result"
    cold, warm, single = Timing(), Timing(), Timing()
    with httpx.Client(base_url=server.url, timeout=60, limits=limits) as client:
        populate(client, prefix, LISTED)
        for _ in range(20):  # warm-up
            timed(lambda: client.get(one))
        listed = list_all(client, prefix)
        if listed != LISTED:
            raise RuntimeError(f"listing returned {listed} sessions, not {LISTED}")
        for _ in range(LISTING_ROUNDS):
            touch_all(client, prefix, LISTED)
            cold.record(server, lambda: list_all(client, prefix))
            warm.record(server, lambda: list_all(client, prefix))
            for _ in range(GETS_PER_ROUND):
                single.record(server, lambda: timed(lambda: client.get(one)))
    note = (f"medians of {LISTING_ROUNDS} rounds (each: a batch to every session, not timed, "
            f"the listing, the listing again, {GETS_PER_ROUND} GETs); time ratio (lower is "
            "better); CPU/req: the server's mean CPU time of a listing / of a GET")
    get = f"{millis(single.median)} (one GET result)"
    return [Row("listing", f"list {LISTED:,} sessions with results (limit={LISTED}, "
                f"following next_cursor; Redis; httpx, sequential), relisting",
                millis(warm.median), get, warm.median / single.median, "<= 20x", note,
                warm.cpu_mean / single.cpu_mean),
            Row("listing", "the same listing right after a batch to every session (nothing "
                "cached: a dashboard polling while every session trains)",
                millis(cold.median), get, cold.median / single.median, "<= 20x",
                f"per round: {round_ratios(cold, single)}", cold.cpu_mean / single.cpu_mean)]


def round_ratios(listings: Timing, gets: Timing) -> str:
    """Each round's listing over the median of that round's GETs, lowest and highest."""
    per_round = [listing / statistics.median(gets.seconds[i * GETS_PER_ROUND:
                                                         (i + 1) * GETS_PER_ROUND])
                 for i, listing in enumerate(listings.seconds)]
    return f"{min(per_round):.1f}-{max(per_round):.1f}x"


FLOOR = "floor"  # the .npz body POSTed to the bare endpoint that only reads it
GOAL_RATIO = 10  # issue 7, target 3: .npz at least 10x JSON in samples/s


def large_rows(server: Server, bare: Server, rounds: int = 5) -> list[Row]:
    """npz, JSON and the floor alternate, `rounds` times each, from one client: the best time
    of each kind."""
    bodies = {kind: body(LARGE_BATCH, kind, seed=1) for kind in (JSON, NPZ)}
    update = f"{server.url}/v1/sessions/auc.large/update"
    posts = {JSON: (server, update, JSON), NPZ: (server, update, NPZ),
             FLOOR: (bare, f"{bare.url}/v1/sessions/auc.large/body", NPZ)}
    timings = {kind: Timing() for kind in posts}
    with httpx.Client(timeout=300) as client:
        timed(lambda: client.put(f"{server.url}/v1/sessions/auc.large", json={"metric": "AUC"}))
        for _ in range(rounds):
            for kind, (target, url, content_type) in posts.items():
                timings[kind].record(target, lambda: timed(lambda: client.post(  # noqa: B023
                    url, content=bodies[content_type],  # noqa: B023
                    headers={"Content-Type": content_type})))  # noqa: B023
    sizes = {kind: len(content) / 1e6 for kind, content in bodies.items()}
    best = {kind: timing.best for kind, timing in timings.items()}
    json_rate, npz_rate = (LARGE_BATCH / best[k] for k in (JSON, NPZ))
    update_row = Row(
        "large", f"one {LARGE_BATCH:,}-sample AUC update, .npz (Redis; httpx)",
        f"{rate(npz_rate, 'samples/s')} ({millis(best[NPZ])})",
        f"{rate(json_rate, 'samples/s')} ({millis(best[JSON])}, JSON)",
        npz_rate / json_rate, f">= {GOAL_RATIO}x",
        f"best of {rounds}, alternating; bodies {sizes[NPZ]:.1f} MB (.npz) and "
        f"{sizes[JSON]:.1f} MB (JSON), encoded before timing; CPU/req: the server's "
        "mean CPU time of an npz update / of a JSON one",
        timings[NPZ].cpu_mean / timings[JSON].cpu_mean)
    return [update_row, floor_row(best, rounds)]


def floor_row(best: dict[str, float], rounds: int) -> Row:
    """The transport floor against the time the goal allows an .npz update. Its ratio is the
    best npz/JSON ratio this stack could show: JSON time / floor, as if decoding, the AUC
    math and the store cost nothing."""
    budget = best[JSON] / GOAL_RATIO
    verdict = "within" if best[FLOOR] <= budget else "above"
    return Row(
        "large", "transport floor: the same .npz POSTed to a bare endpoint that only reads "
        "the body (bench/bare_app.py, 204; httpx)", millis(best[FLOOR]),
        f"{millis(budget)} (what {GOAL_RATIO}x needs: JSON time / {GOAL_RATIO})",
        best[JSON] / best[FLOOR], f">= {GOAL_RATIO}x",
        f"best of {rounds}, alternating with the updates above; ratio: JSON time / floor, the "
        f"ceiling of the npz/JSON ratio on this stack; the floor is {verdict} the {GOAL_RATIO}x "
        f"budget; the npz update spends {millis(best[NPZ] - best[FLOOR])} beyond it "
        "(decoding, AUC, store, answer)")


def listing_part(env: dict[str, str]) -> list[Row]:
    with private_redis() as redis, serving("tally", TALLY,
                                           {"TALLY_REDIS_URL": redis.url, **env}) as server:
        return listing_rows(server)


def large_part(env: dict[str, str]) -> list[Row]:
    # Issue 7's figure is a 1,000,000-sample batch: twice the default TALLY_MAX_BATCH_ELEMENTS
    # (y_true and y_pred), so this server is configured to take it.
    limit = {"TALLY_MAX_BATCH_ELEMENTS": str(2 * LARGE_BATCH)}
    with private_redis() as redis, serving("tally", TALLY, {"TALLY_REDIS_URL": redis.url,
                                                            **limit, **env}) as server, \
            serving("bare", BARE, {}) as bare:
        return large_rows(server, bare)
