"""`GET /metrics`: the sessions' results and epochs, the service's request series (in one
process and summed over real uvicorn workers), auth, truncation, and the Grafana dashboard."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from app import prometheus_dir
from app.api import prometheus
from app.api.app import create_app
from app.errors import StoreUnavailable
from app.settings import Settings
from app.store.memory import MemoryStore
from tests.live_server import LiveServer
from tests.redis_servers import RedisProcess

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docker" / "grafana-dashboard.json"
#: Sessions of several kinds: a plain number, a NaN (one sample: Pearson is undefined), a
#: lazily built metric before its first batch (null), and an array result (per class).
SESSIONS = {
    "run1.val.precision": ({"metric": "Precision"}, [
        {"y_true": [0, 1, 1, 1, 0, 1, 0, 1], "y_pred": [1, 1, 0, 1, 0, 1, 0, 1]},
        {"y_true": [0, 1, 0, 0, 1, 0, 1, 1], "y_pred": [1, 0, 1, 1, 0, 0, 0, 0]}]),
    "run1.val.mean": ({"metric": "Mean"}, [{"values": [1.0, 2.0, 4.5]}]),
    "run1.val.pearson": ({"metric": "PearsonCorrelation"}, [{"y_true": [1.0], "y_pred": [2.0]}]),
    "run2.r2": ({"metric": "R2Score"}, []),
    "run2.f1": ({"metric": "F1Score", "config": {"average": None}},
                [{"y_true": [[0, 1], [1, 0]], "y_pred": [[0.2, 0.8], [0.6, 0.4]]}]),
}


def make_client(store=None, **settings) -> TestClient:
    return TestClient(create_app(Settings(**settings), store=store or MemoryStore()))


def populate(client: TestClient, headers=None) -> None:
    for name, (create, batches) in SESSIONS.items():
        assert client.put(f"/v1/sessions/{name}", json=create, headers=headers).status_code == 201
        for batch in batches:
            answer = client.post(f"/v1/sessions/{name}/update", json=batch, headers=headers)
            assert answer.status_code == 200
    answer = client.post("/v1/sessions/run1.val.mean/reset", headers=headers)
    assert answer.status_code == 200
    answer = client.post("/v1/sessions/run1.val.mean/update", json={"values": [3.0]},
                         headers=headers)
    assert answer.status_code == 200


def samples(text: str, name: str, parse=text_string_to_metric_families) -> list:
    return [s for family in parse(text) for s in family.samples if s.name == name]


def by_session(text: str, name: str) -> dict[str, float]:
    return {s.labels["session"]: s.value for s in samples(text, name)}


def same(exported: float, answered) -> bool:
    """An exported value against the JSON answer: null is exported as NaN."""
    return math.isnan(exported) if answered is None else exported == answered


# -- the mapping of results to samples -----------------------------------------------------
def test_a_number_is_one_sample_with_the_metric_class():
    entry = {"name": "a", "metric": "AUC", "epoch": 3, "result": 0.75}
    assert list(prometheus.result_samples(entry)) == [({"session": "a", "metric": "AUC"}, 0.75)]


def test_null_is_nan_and_an_array_is_not_exported():
    [(labels, value)] = prometheus.result_samples({"name": "a", "metric": "R2Score",
                                                   "result": None})
    assert labels == {"session": "a", "metric": "R2Score"} and math.isnan(value)
    assert list(prometheus.result_samples({"name": "a", "metric": "F1Score",
                                           "result": [0.5, 1.0]})) == []


def test_an_object_result_gives_one_sample_per_member():
    """A metric collection's result is an object of member results (API 1.1)."""
    result = {"precision": 0.8, "auc": None, "f1": [0.1, 0.2], "mean": 3}
    entry = {"name": "run.c", "metrics": ["Precision", "AUC", "F1Score", "Mean"], "epoch": 0,
             "result": result}
    found = {labels["member"]: (labels, value)
             for labels, value in prometheus.result_samples(entry)}
    assert set(found) == {"precision", "auc", "mean"}  # the array member is not a number
    assert found["precision"] == ({"session": "run.c", "member": "precision"}, 0.8)
    assert found["mean"][1] == 3.0 and math.isnan(found["auc"][1])


def test_a_collection_entry_is_exported_with_member_labels():
    entry = {"name": "run.c", "metrics": ["Precision", "AUC"], "epoch": 2,
             "result": {"precision": 0.25, "auc": 0.5}}
    page = prometheus.SessionPage([entry])
    registry = CollectorRegistry()
    registry.register(prometheus.Families(prometheus.session_families(page, 10)))
    text = generate_latest(registry).decode()
    results = {s.labels["member"]: (s.labels, s.value)
               for s in samples(text, "tally_session_result")}
    assert results == {m: ({"session": "run.c", "member": m}, v)
                       for m, v in entry["result"].items()}
    assert by_session(text, "tally_session_epoch") == {"run.c": 2}


# -- sessions through the API --------------------------------------------------------------
def test_every_session_result_and_epoch_is_exported(api_store):
    with make_client(api_store) as client:
        populate(client)
        answer = client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        results = by_session(answer.text, "tally_session_result")
        epochs = by_session(answer.text, "tally_session_epoch")
        metrics = {s.labels["session"]: s.labels["metric"]
                   for s in samples(answer.text, "tally_session_result")}
        for name in SESSIONS:
            document = client.get(f"/v1/sessions/{name}").json()
            result = client.get(f"/v1/sessions/{name}/result").json()["result"]
            assert epochs[name] == document["epoch"], name
            if isinstance(result, list):
                assert name not in results, name
                continue
            assert same(results[name], result), (name, results[name], result)
            assert metrics[name] == document["metric"]
        assert set(epochs) == set(SESSIONS)
        assert epochs["run1.val.mean"] == 1


def test_openmetrics_is_answered_when_asked_for():
    with make_client() as client:
        populate(client)
        answer = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        assert answer.headers["content-type"].startswith("application/openmetrics-text")
        text = answer.text
        epochs = {s.labels["session"]: s.value
                  for s in samples(text, "tally_session_epoch", openmetrics_families)}
        assert epochs == {name: client.get(f"/v1/sessions/{name}").json()["epoch"]
                          for name in SESSIONS}


def test_past_the_limit_the_first_sessions_by_name_are_exported_and_it_says_so(monkeypatch):
    monkeypatch.setattr(prometheus, "PAGE", 2)  # several pages of the listing
    names = sorted(SESSIONS)
    for limit in (0, 1, 3, len(names) - 1, len(names), len(names) + 1):
        with make_client(metrics_max_sessions=limit) as client:
            populate(client)
            text = client.get("/metrics").text
            exported = set(by_session(text, "tally_session_epoch"))
            assert exported == set(names[:limit]), limit
            [flag] = samples(text, "tally_sessions_truncated")
            assert flag.value == float(limit < len(names)), limit
            helps = {f.name: f.documentation for f in text_string_to_metric_families(text)}
            assert ("Truncated" in helps["tally_session_epoch"]) == (limit < len(names))


class UnreachableStore(MemoryStore):
    async def list(self, *args, **kwargs):
        raise StoreUnavailable("the store does not answer")


def test_a_store_that_does_not_answer_still_gives_the_request_series():
    with make_client(UnreachableStore()) as client:
        assert client.get("/healthz").status_code == 200
        answer = client.get("/metrics")
        assert answer.status_code == 200
        [up] = samples(answer.text, "tally_store_up")
        assert up.value == 0
        assert samples(answer.text, "tally_session_epoch") == []
        assert samples(answer.text, "tally_http_requests_total")


# -- auth ----------------------------------------------------------------------------------
TOKENS = {"admin-token": {"scopes": ["admin"]},
          "reader": {"scopes": ["read"]},
          "run1-reader": {"scopes": ["read"], "prefix": "run1."}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_with_tokens_metrics_needs_read_and_a_prefix_sees_only_its_sessions():
    with make_client(tokens=TOKENS) as client:
        populate(client, bearer("admin-token"))
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer("wrong")).status_code == 401
        everything = client.get("/metrics", headers=bearer("reader"))
        assert set(by_session(everything.text, "tally_session_epoch")) == set(SESSIONS)
        limited = client.get("/metrics", headers=bearer("run1-reader")).text
        expected = {n for n in SESSIONS if n.startswith("run1.")}
        assert set(by_session(limited, "tally_session_epoch")) == expected
        assert {s.labels["session"] for s in samples(limited, "tally_session_result")} \
            <= expected
        assert samples(limited, "tally_http_requests_total")  # the service's own: not per name


# -- the service's own requests, in one process --------------------------------------------
def request_counts(text: str) -> dict[tuple[str, str, str], float]:
    return {(s.labels["method"], s.labels["route"], s.labels["status"]): s.value
            for s in samples(text, "tally_http_requests_total")}


def histogram_counts(text: str) -> dict[tuple[str, str], float]:
    return {(s.labels["method"], s.labels["route"]): s.value
            for s in samples(text, "tally_http_request_duration_seconds_count")}


def send_known_requests(client) -> dict[tuple[str, str, str], int]:
    """Requests of known routes, statuses and counts; what the counters must say."""
    sent: dict[tuple[str, str, str], int] = {}

    def note(method: str, route: str, status: int) -> None:
        key = (method, route, str(status))
        sent[key] = sent.get(key, 0) + 1

    answer = client.put("/v1/sessions/c.mean", json={"metric": "Mean"})
    note("PUT", "/v1/sessions/{name}", answer.status_code)
    for i in range(7):
        answer = client.post("/v1/sessions/c.mean/update", json={"values": [float(i)]})
        note("POST", "/v1/sessions/{name}/update", answer.status_code)
    for _ in range(5):
        note("GET", "/v1/sessions/{name}/result",
             client.get("/v1/sessions/c.mean/result").status_code)
    for name in ("missing", "also.missing"):
        note("GET", "/v1/sessions/{name}/result",
             client.get(f"/v1/sessions/{name}/result").status_code)
    for path in ("/nothing/here", "/v1/sessions/a/b/c", "/" + "x" * 300):
        note("GET", prometheus.UNMATCHED, client.get(path).status_code)
    note("OTHER", "/v1/sessions/{name}/result",
         client.request("BREW", "/v1/sessions/c.mean/result").status_code)
    return sent


def test_requests_are_counted_by_route_template_method_and_status():
    with make_client() as client:
        sent = send_known_requests(client)
        text = client.get("/metrics").text
    counts = request_counts(text)
    for key, number in sent.items():
        assert counts[key] == number, key
    assert ("GET", "/v1/sessions/{name}/result", "404") in sent  # a 404 of a known route
    assert ("OTHER", "/v1/sessions/{name}/result", "405") in sent
    assert not [route for (_, route, _) in counts if "c.mean" in route or "x" * 10 in route]
    histograms = histogram_counts(text)
    for method, route in {(m, r) for (m, r, _) in sent}:
        assert histograms[(method, route)] == sum(
            n for (m, r, _), n in sent.items() if (m, r) == (method, route))


def test_histogram_buckets_are_cumulative_and_end_at_the_count():
    with make_client() as client:
        send_known_requests(client)
        text = client.get("/metrics").text
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for s in samples(text, "tally_http_request_duration_seconds_bucket"):
        key = (s.labels["method"], s.labels["route"])
        buckets.setdefault(key, []).append((float(s.labels["le"]), s.value))
    counts = histogram_counts(text)
    assert set(buckets) == set(counts)
    for key, series in buckets.items():
        values = [v for _, v in sorted(series)]
        assert values == sorted(values) and values[-1] == counts[key], key
        assert [le for le, _ in sorted(series)][:-1] == list(prometheus.BUCKETS)


def test_in_progress_counts_the_scrape_itself():
    with make_client() as client:
        [gauge] = samples(client.get("/metrics").text, "tally_http_requests_in_progress")
        assert gauge.value == 1


# -- the multi-process directory -----------------------------------------------------------
def test_one_process_counts_in_memory(tmp_path):
    environ: dict[str, str] = {}
    assert prometheus_dir.prepare(1, None, environ) is None
    assert environ == {}


def test_a_directory_the_user_names_is_used_and_created(tmp_path):
    environ = {prometheus_dir.VARIABLE: str(tmp_path / "mine")}
    assert prometheus_dir.prepare(4, 1234, environ) == tmp_path / "mine"
    assert (tmp_path / "mine").is_dir()


def test_several_workers_of_one_server_share_a_private_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first: dict[str, str] = {}
    second: dict[str, str] = {}
    directory = prometheus_dir.prepare(2, os.getpid(), first)
    assert directory is not None and prometheus_dir.prepare(2, os.getpid(), second) == directory
    assert first == second == {prometheus_dir.VARIABLE: str(directory)}
    assert directory.parent == tmp_path and directory.stat().st_mode & 0o777 == 0o700


def test_directories_of_servers_that_are_gone_are_removed(tmp_path):
    finished = subprocess.Popen(["true"])  # a pid that no longer runs
    finished.wait()
    gone = tmp_path / f"{prometheus_dir.DIRECTORY_PREFIX}{finished.pid}-5"
    reused = tmp_path / f"{prometheus_dir.DIRECTORY_PREFIX}{os.getpid()}-1"  # another start
    live = tmp_path / prometheus_dir.directory_name(os.getpid())
    unrelated = tmp_path / f"{prometheus_dir.DIRECTORY_PREFIX}notes"
    for directory in (gone, reused, live, unrelated):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"")
    prometheus_dir.remove_stale_directories(tmp_path)
    assert not gone.exists() and not reused.exists()
    assert live.exists() and unrelated.exists()


def test_a_planted_link_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / prometheus_dir.directory_name(os.getpid())).symlink_to(target)
    with pytest.raises(prometheus_dir.DirectoryRefused):
        prometheus_dir.own_directory(tmp_path, os.getpid())


# -- real uvicorn workers ------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_workers():
    """One uvicorn with two worker processes on a private Redis; its counting directory."""
    redis_process = RedisProcess().start()
    server = LiveServer({"TALLY_REDIS_URL": redis_process.url}, workers=2).start()
    assert server.process is not None
    directory = Path(tempfile.gettempdir()) / prometheus_dir.directory_name(server.process.pid)
    assert directory.is_dir(), "the workers did not make their shared directory"
    yield server, directory
    server.stop()
    redis_process.stop()
    shutil.rmtree(directory, ignore_errors=True)  # the next server's workers would remove it


def worker_requests(directory: Path) -> dict[int, float]:
    """Requests counted by each worker, read from its own file."""
    counts = {}
    for file in directory.glob("counter_*.db"):
        pid = int(file.stem.split("_")[1])
        metrics = MultiProcessCollector.merge([str(file)])
        counts[pid] = sum(s.value for m in metrics for s in m.samples
                          if s.name == "tally_http_requests_total")
    return counts


def scrape(url: str) -> str:
    answer = httpx.get(f"{url}/metrics")
    assert answer.status_code == 200
    return answer.text


def result_requests(text: str) -> float:
    return request_counts(text).get(("GET", "/v1/sessions/{name}/result", "200"), 0.0)


def hammer(url: str, count: int) -> None:
    """`count` result requests from 4 threads, each on a new connection (so the kernel hands
    them to either worker)."""
    failures: list[str] = []

    def run(share: int) -> None:
        for _ in range(share):
            answer = httpx.get(f"{url}/v1/sessions/w.mean/result",
                               headers={"Connection": "close"})
            if answer.status_code != 200:
                failures.append(answer.text)

    threads = [threading.Thread(target=run, args=(count // 4,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_counts_are_exact_over_two_workers(two_workers):
    server, directory = two_workers
    assert httpx.put(f"{server.url}/v1/sessions/w.mean",
                     json={"metric": "Mean"}).status_code in (200, 201)
    before = result_requests(scrape(server.url))
    sent = 0
    while len([n for n in worker_requests(directory).values() if n > 0]) < 2 or sent < 200:
        hammer(server.url, 100)
        sent += 100
        assert sent <= 2000, "the requests never reached both workers"
    text = scrape(server.url)
    assert result_requests(text) - before == sent
    total = sum(request_counts(text).values())
    assert total == sum(worker_requests(directory).values()) - 1  # this scrape is in the files
    [gauge] = samples(text, "tally_http_requests_in_progress")
    assert gauge.value == 1


def test_a_killed_worker_keeps_its_counts_and_its_live_gauge_goes(two_workers):
    server, directory = two_workers
    assert httpx.put(f"{server.url}/v1/sessions/w.mean",
                     json={"metric": "Mean"}).status_code in (200, 201)
    hammer(server.url, 100)
    before = result_requests(scrape(server.url))
    victim = next(pid for pid in worker_requests(directory)
                  if parent_of(pid) == server.process.pid)
    assert (directory / f"gauge_livesum_{victim}.db").exists()
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while prometheus_dir.process_alive(victim):  # until the supervisor has reaped it
        assert time.monotonic() < deadline, "the killed worker was never reaped"
        time.sleep(0.1)
    hammer(server.url, 40)
    text = scrape(server.url)
    assert result_requests(text) - before == 40
    assert not (directory / f"gauge_livesum_{victim}.db").exists()
    assert (directory / f"counter_{victim}.db").exists()
    [gauge] = samples(text, "tally_http_requests_in_progress")
    assert gauge.value == 1


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


# -- the Grafana dashboard -----------------------------------------------------------------
PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "on", "ignoring", "and", "or", "unless", "label_values", "topk",
    "bottomk", "clamp_min", "delta", "changes", "resets", "last_over_time", "bool",
    "max_over_time", "min_over_time", "offset", "query_result", "label_replace", "vector",
}


def dashboard_expressions(node) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template queries."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                found.append(value)
            elif key == "query" and isinstance(value, str | dict) and node.get("type") == "query":
                found.append(value if isinstance(value, str) else value.get("query", ""))
            else:
                found.extend(dashboard_expressions(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(dashboard_expressions(value))
    return found


def exported_series() -> dict[str, set[str]]:
    """Every series name the service exports, with its labels, from a real exposition."""
    with make_client() as client:
        populate(client)
        send_known_requests(client)
        client.put("/v1/sessions/run.sliced", json={"metric": "Mean", "slices": {"max": 2}})
        client.post("/v1/sessions/run.sliced/update", json={"values": [1.0], "slice": "a"})
        text = client.get("/metrics").text
    collection = {"name": "run.c", "metrics": ["Precision"], "epoch": 0,
                  "result": {"precision": 0.5}}  # member labels: a collection's result
    registry = CollectorRegistry()
    registry.register(prometheus.Families(prometheus.session_families(
        prometheus.SessionPage([collection]), 1) + prometheus.slice_families(
        prometheus.SliceSamples(list(prometheus.result_samples(
            collection, {"precision": 0.5}, {"slice": "a"}))), 1)))
    text += generate_latest(registry).decode()
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            series.setdefault(s.name, set()).update(s.labels)
    return series


def test_the_dashboard_queries_only_series_the_service_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    series = exported_series()
    labels = set().union(*series.values())
    expressions = dashboard_expressions(dashboard)
    assert len(expressions) >= 6 and dashboard["panels"]
    used = set()
    for expr in expressions:
        bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
        bare = re.sub(r"\$\{?\w+\}?|\[[^\]]*\]", "", bare)  # Grafana variables, ranges
        names = set()
        for match in re.finditer(r"([A-Za-z_:][\w:]*)\s*(\()?", bare):
            word, call = match[1], match[2]
            if word in PROMQL_WORDS:
                continue
            assert not call, f"unknown function {word} in {expr!r}"
            if word.startswith("tally_"):
                assert word in series, (word, expr)
                names.add(word)
            else:
                assert word in labels, (word, expr)
        assert names, f"no Tally series in {expr!r}"
        used |= names
    wanted = {"tally_session_result", "tally_session_epoch", "tally_http_requests_total",
              "tally_http_request_duration_seconds_bucket"}
    assert wanted <= used


def test_the_dashboard_labels_each_query_by_labels_its_series_carry():
    dashboard = json.loads(DASHBOARD.read_text())
    series = exported_series()
    for expr in dashboard_expressions(dashboard):
        names = set(re.findall(r"tally_\w+", expr))
        labels = set().union(*(series[n] for n in names))
        grouped = {w.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
                   for w in group.split(",") if w.strip()}
        matched = set(re.findall(r"(\w+)\s*(?:=~|!=|!~|=)\s*\"", expr))
        assert grouped | matched <= labels, (expr, (grouped | matched) - labels)


def test_a_collection_session_exports_one_series_per_member():
    with make_client() as client:
        body = {"metrics": [{"metric": "Precision"}, {"metric": "Recall"},
                            {"metric": "F1Score"}]}
        assert client.put("/v1/sessions/run7.val", json=body).status_code == 201
        batch = {"y_true": [[1], [0], [1], [1]], "y_pred": [[0.9], [0.4], [0.35], [0.8]]}
        assert client.post("/v1/sessions/run7.val/update", json=batch).status_code == 200
        answered = client.get("/v1/sessions/run7.val/result").json()["result"]
        text = client.get("/metrics").text
    members = {s.labels["member"]: s.value for s in samples(text, "tally_session_result")
               if s.labels.get("session") == "run7.val"}
    # F1Score's result is a per-class array: not a scalar series, like any array result.
    assert members == {"precision": answered["precision"], "recall": answered["recall"]}
    assert by_session(text, "tally_session_epoch")["run7.val"] == 0


def test_each_slice_of_a_sliced_session_is_a_series(api_store):
    with make_client(api_store) as client:
        assert client.put("/v1/sessions/shop.auc", json={
            "metric": "AUC", "slices": {"max": 5}}).status_code == 201
        assert client.put("/v1/sessions/shop.c", json={
            "metrics": [{"metric": "Precision"}, {"metric": "Recall"}],
            "slices": {"max": 5}}).status_code == 201
        batch = {"y_true": [1, 0, 1, 0, 1, 1], "y_pred": [0.9, 0.4, 0.35, 0.2, 0.8, 0.7],
                 "slices": ["fr", "fr", "de", "de", 3, "fr"]}
        for name in ("shop.auc", "shop.c"):
            assert client.post(f"/v1/sessions/{name}/update", json=batch).status_code == 200
        answered = {name: client.get(f"/v1/sessions/{name}/slices").json()["slices"]
                    for name in ("shop.auc", "shop.c")}
        text = client.get("/metrics").text
    found = {(s.labels["session"], s.labels["slice"], s.labels.get("member", "")): s.value
             for s in samples(text, "tally_slice_result")}
    expected = {("shop.auc", value, ""): result
                for value, result in answered["shop.auc"].items()}
    expected |= {("shop.c", value, member): result
                 for value, results in answered["shop.c"].items()
                 for member, result in results.items()}
    assert found == expected
    assert {s.labels["metric"] for s in samples(text, "tally_slice_result")
            if s.labels["session"] == "shop.auc"} == {"AUC"}
    [flag] = samples(text, "tally_slices_truncated")
    assert flag.value == 0.0


def test_past_the_slice_limit_the_first_slice_results_are_exported_and_it_says_so():
    with make_client(metrics_max_slice_series=3) as client:
        client.put("/v1/sessions/a", json={"metric": "Mean", "slices": {"max": 9}})
        client.put("/v1/sessions/b", json={"metric": "Mean", "slices": {"max": 9}})
        for name in ("a", "b"):
            client.post(f"/v1/sessions/{name}/update",
                        json={"values": [1.0, 2.0], "slices": ["x", "y"]})
        text = client.get("/metrics").text
    exported = [(s.labels["session"], s.labels["slice"])
                for s in samples(text, "tally_slice_result")]
    assert exported == [("a", "x"), ("a", "y"), ("b", "x")]
    [flag] = samples(text, "tally_slices_truncated")
    assert flag.value == 1.0


def test_one_process_counts_expose_what_prometheus_client_would(monkeypatch):
    """LocalHttpMetrics (one process, plain numbers) against HttpMetrics (prometheus_client's
    own objects, the oracle) fed the same requests: the same exposition, byte for byte, in
    both formats. Durations include every bucket bound exactly (`le` is inclusive), values
    between and beyond them, and requests still in progress."""
    import random

    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    rng = random.Random(11)
    local, oracle = prometheus.LocalHttpMetrics(), prometheus.HttpMetrics()
    durations = [*prometheus.BUCKETS, 0.0, 1e-9, 20.0, 1e6]
    durations += [rng.uniform(0, 12) for _ in range(200)]
    durations += [rng.choice(prometheus.BUCKETS) * rng.choice([0.999, 1.0, 1.001])
                  for _ in range(100)]
    for seconds in durations:
        method = rng.choice(["GET", "POST", "OTHER"])
        route = rng.choice(["/v1/sessions/{name}/update", "/v1/sessions/{name}/result",
                            prometheus.UNMATCHED])
        status = rng.choice([200, 404, 409, 500])
        local.observe(method, route, status, seconds)
        oracle.observe(method, route, status, seconds)
    monkeypatch.setattr(prometheus, "perf_counter", lambda: 7.25)  # the same duration twice
    for metrics in (local, oracle):
        metrics.started()
        metrics.started()
        metrics.finished({"method": "BREW", "route": None}, 418, metrics.started() - 0.5)

    def exposed(metrics, encode):
        registry = CollectorRegistry(auto_describe=False)
        for collector in metrics.collectors:
            registry.register(collector)
        return encode(registry)

    for encode in (generate_latest, openmetrics):
        assert exposed(local, encode) == exposed(oracle, encode)
    text = exposed(local, generate_latest).decode()
    assert "tally_http_requests_in_progress 2.0" in text
    assert 'method="OTHER",route="<unmatched>",status="418"' in text


def test_the_app_counts_in_process_unless_workers_share_files(monkeypatch, tmp_path):
    assert isinstance(prometheus.request_metrics(), prometheus.LocalHttpMetrics)
    monkeypatch.setenv(prometheus_dir.VARIABLE, str(tmp_path))
    assert isinstance(prometheus.request_metrics(), prometheus.HttpMetrics)
