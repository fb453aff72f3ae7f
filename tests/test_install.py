"""A lean, honest install: `make run` installs the runtime only, the app needs nothing from the
test tools or the Keras oracle (it serves, example plugins included, with those imports
blocked), and the two install stamps switch without reinstalling what is there."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.redis_servers import free_port
from tests.served import ROOT, Served, clean_env

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: The import names of the `test` extra's distributions (and what they pull in), which the
#: runtime must never import.
TEST_ONLY_IMPORTS = {
    "pytest": ["pytest", "_pytest"], "pytest-asyncio": ["pytest_asyncio"],
    "hypothesis": ["hypothesis"], "keras": ["keras"], "jax": ["jax", "jaxlib"],
    "scikit-learn": ["sklearn"], "ruff": ["ruff"], "mypy": ["mypy"],
    "schemathesis": ["schemathesis"], "selenium": ["selenium"],
}
BLOCKED = sorted({name for names in TEST_ONLY_IMPORTS.values() for name in names}
                 | {"tensorflow", "torch"})


def extra_test_names() -> list[str]:
    return [str(canonicalize_name(Requirement(r).name))
            for r in PYPROJECT["project"]["optional-dependencies"]["test"]]


def requirement_closure(root: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution a `pip install root[extras]` pulls in, read from the installed
    metadata (so no network): requirements whose markers hold for the extras asked."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        key = (str(canonicalize_name(name)), wanted)
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue  # a requirement for another platform or Python
        for line in requires:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": extra})
                                     for extra in (wanted or {""})):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return {name for name, _ in seen}


# -- what `make run` installs --------------------------------------------------------------
def test_every_test_extra_is_blocked_by_name():
    """A distribution added to the `test` extra must be added above too."""
    assert set(extra_test_names()) <= set(TEST_ONLY_IMPORTS)


def test_the_runtime_pulls_in_no_test_tool():
    runtime = requirement_closure("tally")
    assert {"fastapi", "uvicorn", "numpy", "redis", "swagger-ui-bundle-v2"} <= runtime
    assert not runtime & (set(extra_test_names()) | {"jaxlib", "tensorflow", "torch"})


def test_the_test_extra_does_pull_them_in():
    """The same walk finds them through the extra: the check above can fail."""
    assert {"keras", "jax", "pytest"} <= requirement_closure("tally", frozenset({"test"}))


BLOCKER = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys

    BLOCKED = set({blocked!r})

    class TestOnly(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"{{name}} is test-only", name=name)
            return None

    sys.meta_path.insert(0, TestOnly())
    import app
    for module in pkgutil.walk_packages(app.__path__, "app."):
        if module.name != "app.main":  # importing it builds the app: the server does that
            importlib.import_module(module.name)
    from app.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_the_runtime_serves_the_example_plugins_with_test_tools_blocked():
    """As the README says for a fresh `make run` checkout: the examples by module name."""
    port = free_port()
    env = clean_env(PYTHONPATH=str(ROOT / "examples" / "plugins"),
                    TALLY_PLUGINS="tally_examples.huber,tally_examples.true_positives")
    argv = [sys.executable, "-c", BLOCKER.format(blocked=BLOCKED), "serve", "--port", str(port)]
    served = Served(argv, port, env)
    try:
        served.ready()
        url = served.url
        assert httpx.put(f"{url}/v1/sessions/h", json={"metric": "HuberMetric",
                                                       "config": {"threshold": 1.0}}).is_success
        assert httpx.post(f"{url}/v1/sessions/h/update",
                          json={"y_true": [0.0, 0.0], "y_pred": [0.5, 3.0]}).is_success
        # Huber with threshold 1: 0.5 * 0.5**2 = 0.125 and 1 * 3 - 0.5 = 2.5; the mean
        assert httpx.get(f"{url}/v1/sessions/h/result").json()["result"] == \
            pytest.approx(1.3125)
        assert httpx.get(f"{url}/docs/swagger-ui-bundle.js").status_code == 200
        log = served.output()
    finally:
        served.stop()
    for plugin in ("tally_examples.huber", "tally_examples.true_positives"):
        assert log.count(f"metric plugin {plugin} (from ") == 1, log
    assert "Traceback" not in log and "is test-only" not in log


def test_a_blocked_import_really_fails():
    """The blocker itself: without it this would import pytest."""
    code = BLOCKER.format(blocked=["pytest"]).replace(
        "from app.cli import main", "import pytest")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=clean_env(), cwd=ROOT, timeout=120)
    assert done.returncode != 0 and "pytest is test-only" in done.stderr


# -- the Makefile's two stamps -------------------------------------------------------------
def make_dry_run(target: str, venv: Path) -> str:
    """What `make TARGET` would run with the virtualenv at `venv` (`make -n` runs nothing)."""
    done = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def pip_installs(commands: str) -> list[str]:
    return re.findall(r"pip install --quiet (-e \S+)", commands)


def stamp(venv: Path, *names: str) -> None:
    venv.mkdir(exist_ok=True)
    for name in names:
        (venv / name).touch()


def test_make_run_installs_the_runtime_only(tmp_path):
    commands = make_dry_run("run", tmp_path / "venv")
    assert "-m venv" in commands
    assert pip_installs(commands) == ["-e ."]
    assert f"{tmp_path}/venv/bin/tally serve --host 127.0.0.1 --port 8000 --workers 1" \
        in commands


def test_make_test_installs_the_test_extra(tmp_path):
    assert "-e '.[test]'" in make_dry_run("test", tmp_path / "venv")


def test_make_run_after_make_test_installs_nothing(tmp_path):
    venv = tmp_path / "venv"
    stamp(venv, ".created", ".installed-test", ".installed-runtime")
    commands = make_dry_run("run", venv)
    assert "pip install" not in commands and "-m venv" not in commands


def test_make_test_after_make_run_adds_the_test_extra_only(tmp_path):
    venv = tmp_path / "venv"
    stamp(venv, ".created", ".installed-runtime")
    commands = make_dry_run("test", venv)
    assert "-m venv" not in commands
    assert pip_installs(commands)[0] == "-e '.[test]'"
    assert "-e ." not in pip_installs(commands)


def test_the_test_stamp_marks_the_runtime_installed():
    recipe = (ROOT / "Makefile").read_text().split("$(TESTDEPS): pyproject.toml", 1)[1]
    assert "touch $@ $(RUNTIME)" in recipe.split("\n\n", 1)[0]


def test_the_project_names_its_console_script():
    assert PYPROJECT["project"]["scripts"] == {"tally": "app.cli:main"}
