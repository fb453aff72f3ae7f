"""Real uvicorn processes of the service (several, with several workers), for tests that
must cross real HTTP and real process boundaries, and restart them (`kill`, then `start`)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.redis_servers import free_port
from tests.served import terminate, wait_until_ready


class LiveServer:
    def __init__(self, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env}
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers), "--log-level",
             "warning", "--http", "app.http_protocol:HttpToolsProtocol"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until_ready(self.url, self.process, lambda: "(output not kept)", within=60)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no graceful shutdown."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, timeout=15)
            self.process = None
