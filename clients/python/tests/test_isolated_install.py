"""The client installs alone into a fresh virtualenv (from PyPI: httpx and numpy) and
importing it pulls neither FastAPI nor redis, nor keras."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[1]

CHECK = """
import importlib.util, sys
import tally_client
from tally_client import RemoteMetric, TallyClient, AsyncTallyClient
loaded = sorted({"fastapi", "starlette", "redis", "keras", "pydantic"} & set(sys.modules))
assert not loaded, f"importing tally_client loaded {loaded}"
installed = [m for m in ("fastapi", "redis", "uvicorn") if importlib.util.find_spec(m)]
assert not installed, f"installing tally-client installed {installed}"
try:
    tally_client.TallyCallback
except ImportError as exc:
    assert "keras" in str(exc), exc
else:
    raise AssertionError("TallyCallback imported without keras")
print("ok")
"""


@pytest.mark.isolated_install
def test_the_client_installs_and_imports_without_the_service_dependencies(tmp_path):
    source = tmp_path / "tally-client"  # a copy: pip builds in the source tree
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns(
        "*.egg-info", "build", "__pycache__", ".*_cache", "tests"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run([python, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr[-3000:]
    assert check.stdout.strip() == "ok"
