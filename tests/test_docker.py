"""The deployment files, tested without a Docker engine: the compose file (services, profiles,
healthchecks, token, ports on localhost, the 3-master cluster profile), the image's command and
healthcheck, and the build context that .dockerignore leaves."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
CLUSTER_NODES = ["redis-node-1", "redis-node-2", "redis-node-3"]


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable syntax as this file uses it: `${V}`, `${V:-default}`, `${V:?error}`
    and `$$` for a literal `$`."""
    def one(match: re.Match[str]) -> str:
        name, operator, word = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if operator == ":?":
            raise LookupError(word)
        return word or ""

    value = re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value.replace("$$", "\0"))
    return value.replace("\0", "$")


def environment(service: str, **env: str) -> dict[str, str]:
    return {k: interpolate(str(v), env) for k, v in SERVICES[service]["environment"].items()}


def tally_settings(service: str, **env: str) -> Settings:
    values = {k[len("TALLY_"):].lower(): v for k, v in environment(service, **env).items()
              if k.startswith("TALLY_")}
    values["tokens"] = json.loads(values["tokens"])
    return Settings(**values)


# -- compose -------------------------------------------------------------------------------
def test_default_services_and_the_cluster_profile():
    default = {name for name, s in SERVICES.items() if not s.get("profiles")}
    cluster = {name for name, s in SERVICES.items() if "cluster" in s.get("profiles", [])}
    assert default == {"redis", "tally"}
    assert cluster == {*CLUSTER_NODES, "redis-cluster-init", "tally-cluster"}


def test_published_ports_are_bound_to_localhost():
    published = [port for s in SERVICES.values() for port in s.get("ports", [])]
    assert published == ["127.0.0.1:8000:8000", "127.0.0.1:8001:8000"]


def test_redis_is_healthy_before_tally_starts():
    assert SERVICES["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert SERVICES["tally"]["depends_on"] == {"redis": {"condition": "service_healthy"}}


@pytest.mark.parametrize("service", ["tally", "tally-cluster"])
def test_every_tally_needs_a_token(service):
    raw = SERVICES[service]["environment"]["TALLY_TOKENS"]
    with pytest.raises(LookupError, match="set TALLY_TOKEN"):
        environment(service)
    settings = tally_settings(service, TALLY_TOKEN="s3cret")
    assert settings.tokens["s3cret"].scopes == ["admin"]
    assert "${TALLY_TOKEN:?" in raw


@pytest.mark.parametrize("service", ["tally", "tally-cluster"])
def test_several_workers_only_on_redis(service):
    env = environment(service, TALLY_TOKEN="t")
    assert int(env["WEB_CONCURRENCY"]) == 2 and env["TALLY_REDIS_URL"]
    assert int(environment(service, TALLY_TOKEN="t", WEB_CONCURRENCY="4")["WEB_CONCURRENCY"]) == 4


def test_every_image_is_pinned_to_a_patch_release():
    images = {s["image"] for s in SERVICES.values() if "image" in s}
    assert images == {"redis:7.4.2-bookworm"}
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?",
                        re.search(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE).group(1))


def test_the_cluster_profile_has_three_masters_announced_by_name():
    for node in CLUSTER_NODES:
        command = SERVICES[node]["command"]
        options = dict(zip(command[1::2], command[2::2], strict=True))
        assert options["--cluster-enabled"] == "yes"
        assert options["--cluster-announce-hostname"] == node
        assert options["--cluster-preferred-endpoint-type"] == "hostname"
        assert SERVICES[node]["healthcheck"]["test"] == ["CMD", "redis-cli", "-p",
                                                         options["--port"], "ping"]
    init = SERVICES["redis-cluster-init"]
    script = interpolate(init["command"][2], {})
    assert "--cluster-replicas 0" in script and "--cluster-yes" in script
    for node in CLUSTER_NODES:
        assert f"$(getent hosts {node} | cut -d' ' -f1):7000" in script
        assert init["depends_on"][node] == {"condition": "service_healthy"}
    assert SERVICES["tally-cluster"]["depends_on"] == \
        {"redis-cluster-init": {"condition": "service_completed_successfully"}}


def test_the_cluster_tally_uses_cluster_mode_on_a_node():
    settings = tally_settings("tally-cluster", TALLY_TOKEN="t")
    assert settings.redis_cluster is True
    assert settings.redis_url == "redis://redis-node-1:7000"


# -- the image -----------------------------------------------------------------------------
def test_the_image_serves_through_tally_serve_as_nobody():
    assert json.loads(re.search(r"^CMD (.+)$", DOCKERFILE, re.MULTILINE).group(1)) == \
        ["tally", "serve"]
    assert re.search(r"^USER nobody$", DOCKERFILE, re.MULTILINE)
    healthcheck = re.search(r"^HEALTHCHECK (.+)$", DOCKERFILE, re.MULTILINE).group(1)
    assert "/readyz" in healthcheck


# -- the build context ---------------------------------------------------------------------
def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (excludes?, pattern), Docker's glob syntax: `**` any folders, `*` and
    `?` within one path element, a leading `!` re-includes."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = "".join(
            "(.*/)?" if part == "**/" else ".*" if part == "**" else "[^/]*" if part == "*"
            else "[^/]" if part == "?" else re.escape(part)
            for part in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", glob))
        rules.append((excludes, re.compile(regex)))
    return rules


def in_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """The last rule that matches the path or one of its parent folders decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for excludes, pattern in rules:
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            excluded = excludes
    return not excluded


def context_files() -> list[tuple[str, int]]:
    rules = ignore_rules()
    found = []
    for folder, dirs, files in os.walk(ROOT):
        for name in files:
            path = Path(folder, name)
            relative = path.relative_to(ROOT).as_posix()
            if in_context(relative, rules):
                found.append((relative, path.stat().st_size))
        dirs[:] = [d for d in dirs if d not in (".git", ".venv")  # large; both excluded below
                   or in_context(Path(folder, d).relative_to(ROOT).as_posix(), rules)]
    return found


@pytest.mark.parametrize(("path", "sent"), [
    (".venv/bin/python", False), (".git/HEAD", False), ("tests/test_cli.py", False),
    ("clients/python/pyproject.toml", False), ("examples/plugins/README.md", False),
    ("app/__pycache__/cli.cpython-311.pyc", False), ("__pycache__/x.pyc", False),
    ("docs/other.md", False), ("docker-compose.yml", False), ("tally.egg-info/PKG-INFO", False),
    ("app/cli.py", True), ("app/store/lua/apply.lua", True), ("pyproject.toml", True),
    ("README.md", True), ("MANIFEST.in", True), ("docs/API.md", True),
])
def test_the_build_context_is_an_allowlist(path, sent):
    assert in_context(path, ignore_rules()) is sent


def test_everything_the_dockerfile_copies_is_in_the_context():
    sent = {path for path, _ in context_files()}
    for line in re.findall(r"^COPY (.+) \S+$", DOCKERFILE, re.MULTILINE):
        for source in line.split():
            assert source in sent or any(p.startswith(source + "/") for p in sent), source


def test_the_build_context_is_small():
    files = context_files()
    assert not [p for p, _ in files if p.startswith((".venv/", ".git/", "tests/"))]
    assert sum(size for _, size in files) < 5_000_000
