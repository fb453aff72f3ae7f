"""`/docs` works offline: every URL the page loads is the app's own and answers with the right
content; the page can send a bearer token; the contract ships with the code."""

from __future__ import annotations

import importlib.metadata
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from swagger_ui_bundle import swagger_ui_path

from app.api.app import create_app
from app.settings import Settings
from app.store.memory import MemoryStore

ROOT = Path(__file__).parent.parent
TOKENS = {"s3cret": {"scopes": ["read"]}}
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png",
                 ".json": "application/json"}


class References(HTMLParser):
    """Every URL the page's tags load (src, href) and every `url:` in its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.urls += re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", data)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


@pytest.fixture
def client():
    settings = Settings(tokens=TOKENS)  # secured: the page must load without a token anyway
    with TestClient(create_app(settings, store=MemoryStore())) as c:
        yield c


def test_the_page_loads_only_local_urls_and_each_answers(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = references(page.text)
    assert {Path(u).suffix for u in urls} == {".js", ".css", ".png", ".json"}, urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["content-type"].startswith(CONTENT_TYPES[Path(url).suffix]), url
    assert "://" not in page.text.replace("http://www.w3.org", "")  # no CDN, no other host


def test_the_assets_are_swagger_ui_itself(client):
    bundle = client.get("/docs/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text and len(bundle.content) > 500_000
    assert bundle.headers["cache-control"] == "public, max-age=86400"
    assert ".swagger-ui" in client.get("/docs/swagger-ui.css").text
    assert client.get("/docs/favicon-32x32.png").content.startswith(b"\x89PNG")


def test_swagger_ui_reads_openapi_3_1_and_its_licence_allows_shipping(client):
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders from version 5 on."""
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    major = re.fullmatch(r"swagger-ui-(\d+)\.\d+\.\d+", Path(str(swagger_ui_path)).name)
    assert major is not None and int(major.group(1)) >= 5
    metadata = importlib.metadata.metadata("swagger-ui-bundle-v2")
    assert "Apache" in (metadata.get("License") or metadata.get("License-Expression") or "")


def test_the_page_can_send_a_bearer_token(client):
    page = client.get("/docs").text
    assert '"persistAuthorization": true' in page
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert client.get("/v1/sessions").status_code == 401
    with_token = client.get("/v1/sessions", headers={"Authorization": "Bearer s3cret"})
    assert with_token.status_code == 200


def test_the_page_follows_a_root_path():
    with TestClient(create_app(Settings(), store=MemoryStore()), root_path="/tally") as client:
        urls = references(client.get("/docs").text)
    assert urls and all(url.startswith("/tally/") for url in urls), urls


def test_only_the_pages_own_files_are_served(client):
    for name in ("index.html", "..%2Fpyproject.toml", "swagger-initializer.js"):
        answer = client.get(f"/docs/{name}")
        assert answer.status_code == 404, name
        assert answer.headers["content-type"] == "application/problem+json"


def test_no_cdn_pages_are_left(client):
    assert client.get("/redoc").status_code == 404
    assert "/docs/" not in str(client.get("/openapi.json").json()["paths"])


def test_the_contract_ships_with_the_code():
    assert (ROOT / "docs" / "API.md").read_text().startswith("# Tally HTTP API, version 1.1")
    assert "docs/API.md" in create_app(Settings(), store=MemoryStore()).description
    manifest = (ROOT / "MANIFEST.in").read_text().split()
    assert "docs/API.md" in manifest  # in the source distribution too
