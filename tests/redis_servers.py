"""Private redis-server processes for tests: started on free ports, stopped and restarted at
will (fault tests), never a server someone else started."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free port below the ephemeral range whose cluster bus port (+10000) is free too."""
    for _ in range(1000):
        port = random.randint(20000, 29999)
        if _is_free(port) and _is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair found")


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; `make test` installs it "
                           "(apt-get install -y redis-server)")
    return binary


class RedisProcess:
    def __init__(self, port: int | None = None, *extra: str) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"tally-redis-{self.port}-"))
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_timeout=0.5).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its socket (connects succeed) but answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


class RedisClusterProcesses:
    """Three masters (and optionally a replica each): the smallest real Redis Cluster."""

    def __init__(self, size: int = 3, replicas: int = 0, node_timeout_ms: int = 2000) -> None:
        self.replicas = replicas
        self.nodes = [RedisProcess(None, "--cluster-enabled", "yes",
                                   "--cluster-node-timeout", str(node_timeout_ms))
                      for _ in range(size * (1 + replicas))]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> RedisClusterProcesses:
        for node in self.nodes:
            node.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create",
             *[f"127.0.0.1:{n.port}" for n in self.nodes],
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.healthy(self.nodes) and self.replicas_linked():
                return self
            time.sleep(0.1)
        raise RuntimeError("redis cluster did not become ready")

    @staticmethod
    def healthy(nodes: list[RedisProcess]) -> bool:
        try:
            states = [n.client().cluster("info").get("cluster_state") for n in nodes]
        except redis.RedisError:
            return False
        return all(state in ("ok", b"ok") for state in states)

    def replicas_linked(self) -> bool:
        roles = [n.client().info("replication") for n in self.nodes]
        linked = [r for r in roles if r.get("role") == "slave"
                  and r.get("master_link_status") == "up"]
        return len(linked) == len(self.nodes) * self.replicas // (1 + self.replicas)

    def master_of(self, key: str) -> RedisProcess:
        """The node that serves `key`'s slot as master (asked of a live node)."""
        live = next(n for n in self.nodes if n.process is not None)
        slot = live.client().cluster("keyslot", key)
        for entry in live.client().execute_command("CLUSTER", "SLOTS"):
            start, end, master = entry[0], entry[1], entry[2]
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == int(master[1]))
        raise RuntimeError(f"no master serves slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def flush(self) -> None:
        for node in self.nodes:
            node.client().flushall()
