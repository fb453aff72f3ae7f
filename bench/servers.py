"""The processes a benchmark measures: uvicorn servers and private redis-servers.

Every server is its own uvicorn process on a free port, started with `--loop uvloop --http
app.http_protocol:HttpToolsProtocol --no-access-log`, as `tally serve` runs it: uvicorn's
httptools protocol with a response's head and body sent in one write (uvicorn refuses to start
when uvloop or httptools is missing, and `fast_stack_loaded` checks that the running workers
really mapped both). Tally and the bare baselines run on this same stack. CPU time is read from
/proc for a process and its children, and from `INFO cpu` for Redis, so a figure can say what a
request cost the server besides how many the server answered.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.redis_servers import RedisProcess, free_port

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
#: The HTTP protocol `tally serve` runs (app/http_protocol.py), for every server measured.
HTTP_PROTOCOL = "app.http_protocol:HttpToolsProtocol"
#: Shared objects a worker maps when uvicorn really runs on uvloop and httptools.
FAST_STACK_LIBRARIES = ("uvloop/loop.", "httptools/parser/parser.")


@dataclass
class Server:
    """One uvicorn server (its master process, with `workers` worker children if > 1)."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    workers: int
    log: Path

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server and all its worker processes."""
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.unlink(missing_ok=True)


def uvicorn_command(module: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", module, "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--loop", "uvloop", "--http", HTTP_PROTOCOL,
            "--no-access-log", "--log-level", "warning"]


def server_environment(env: dict[str, str]) -> dict[str, str]:
    """This process' environment without any TALLY_ setting of the caller's shell (a stray
    TALLY_REDIS_URL would point the memory-store server at someone's Redis), plus `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    return {**clean, **env}


def start_server(name: str, module: str, env: dict[str, str], workers: int = 1) -> Server:
    """Start `module` under uvicorn on a free port; return once every worker answers."""
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"tally-bench-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(uvicorn_command(module, port, workers),
                                   env=server_environment(env), stdout=sink, stderr=sink)
    server = Server(name, process, f"http://127.0.0.1:{port}", workers, log)
    wait_until_serving(server)
    return server


def wait_until_serving(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start: {server.log.read_text()[-2000:]}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200 and \
                    len(worker_pids(server)) >= server.workers:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not answer within {timeout:.0f} s")


@contextmanager
def serving(name: str, module: str, env: dict[str, str], workers: int = 1) -> Iterator[Server]:
    server = start_server(name, module, env, workers)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def private_redis() -> Iterator[RedisProcess]:
    """A redis-server of our own on a free port (no persistence), stopped on exit."""
    redis = RedisProcess().start()
    try:
        yield redis
    finally:
        redis.stop()


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children(current)
    return tree


def is_spawned_worker(pid: int) -> bool:
    """uvicorn's workers are multiprocessing spawns; its supervisor also has a resource
    tracker child, which serves nothing."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def worker_pids(server: Server) -> list[int]:
    """The processes that serve requests: the master itself with one worker, else its
    spawned worker children (uvicorn's multiprocess supervisor serves nothing itself)."""
    if server.workers == 1:
        return [server.process.pid]
    return [pid for pid in children(server.process.pid) if is_spawned_worker(pid)]


def cpu_seconds_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND  # utime, stime


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds_of(p) for p in process_tree(pid))


def fast_stack_loaded(server: Server) -> bool:
    """True when every worker process has uvloop's and httptools' extension modules mapped."""
    for pid in worker_pids(server):
        maps = Path(f"/proc/{pid}/maps").read_text()
        if not all(library in maps for library in FAST_STACK_LIBRARIES):
            return False
    return True


def redis_cpu_seconds(redis: RedisProcess) -> float:
    """Redis' own CPU time so far (`INFO cpu`: used_cpu_sys + used_cpu_user)."""
    info = redis.client().info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
