"""Fixtures: a real uvicorn server of the repository's app (in-memory store) on a free port,
and the in-process app for the async client. Keras is the oracle (numpy backend)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "numpy")

import re  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env() -> dict[str, str]:
    """The environment of a server with the in-memory store, open, nothing else set."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}


class LiveServer:
    """`uvicorn app.main:app` as a subprocess, as tests/live_server.py of the service does."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"],
            cwd=REPO, env=server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, seconds: float = 60) -> LiveServer:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"uvicorn exited with {self.process.returncode}: {err}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("uvicorn did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    server = LiveServer().wait_ready()
    yield server.url
    server.stop()


_names = iter(range(10**9))


@pytest.fixture
def session_name(request: pytest.FixtureRequest) -> str:
    """A session name no other test uses on the shared server."""
    return re.sub(r"[^A-Za-z0-9._:-]", "_", f"t{next(_names)}.{request.node.name[:60]}")
