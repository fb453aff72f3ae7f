"""A server process started the way a person starts it (`tally serve`, or a command given as
argv), its stderr kept in a file so that a test can read what it logged."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.redis_servers import free_port

ROOT = Path(__file__).parent.parent
TALLY = str(Path(sys.executable).parent / "tally")  # the console script of this virtualenv
READY_WITHIN = 120  # seconds; bounds a server that never becomes ready (not a timing check)


def clean_env(**values: str) -> dict[str, str]:
    """This environment without Tally's, uvicorn's and the CLI's variables, plus `values`."""
    base = {k: v for k, v in os.environ.items()
            if not k.upper().startswith(("TALLY_", "UVICORN_")) and k != "WEB_CONCURRENCY"}
    base["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")])
    return {**base, **values}


class Served:
    def __init__(self, argv: list[str], port: int, env: dict[str, str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=self._log,
                                        stderr=subprocess.STDOUT, text=True)

    @classmethod
    def tally(cls, *options: str, **env: str) -> Served:
        """`tally serve` on a free port, with `env` added to a clean environment."""
        port = free_port()
        return cls([TALLY, "serve", "--port", str(port), *options], port, clean_env(**env))

    def ready(self) -> Served:
        wait_until_ready(self.url, self.process, self.output)
        return self

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def wait(self) -> int:
        """For a server that must stop by itself: its exit status."""
        return self.process.wait(timeout=READY_WITHIN)

    def stop(self) -> None:
        terminate(self.process)
        self._log.close()


def wait_until_ready(url: str, process: subprocess.Popen[Any], output: Callable[[], str],
                     within: float = READY_WITHIN) -> None:
    """Until `url`'s /readyz answers 200; an AssertionError with the server's output if the
    process exits first or `within` seconds pass (a bound, not a timing check)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}):\n{output()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not become ready:\n{output()}")


def terminate(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL if it has not exited within `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
