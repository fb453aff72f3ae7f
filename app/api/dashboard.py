"""`GET /`: the dashboard. Plain HTML, CSS and JavaScript shipped in the package (`app/static/`)
and served as they are: no build step and nothing fetched from anywhere else, so the page works
on an air-gapped cluster. The page itself holds no data; it reads the `/v1` API from the
browser with the bearer token the person pastes, so serving it needs no token.

Caching: the page is `no-cache` (always revalidated, cheaply, through its ETag), and it names
each asset with the asset's content digest (`/dashboard/dashboard.js?v=<digest>`), so an asset
asked for with its current digest can be cached for a year: a new release changes the digest,
and with it the URL the page asks for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from app.errors import NotFound

router = APIRouter(tags=["dashboard"])

#: Every asset the page loads, with its content type. Nothing else under `app/static/` is served.
ASSET_TYPES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PAGE = "index.html"
NO_CACHE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"
#: The page runs only its own script and style, and talks only to its own origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    digest: str

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'


def _asset(body: bytes, media_type: str) -> Asset:
    return Asset(body, media_type, hashlib.sha256(body).hexdigest()[:16])


@cache
def assets() -> dict[str, Asset]:
    """The assets, read once from the package."""
    static = resources.files("app") / "static"
    return {name: _asset((static / name).read_bytes(), media_type)
            for name, media_type in ASSET_TYPES.items()}


@cache
def page() -> Asset:
    """`index.html` with each `{{asset}}` replaced by the asset's URL with its digest."""
    html = (resources.files("app") / "static" / PAGE).read_text(encoding="utf-8")
    for name, asset in assets().items():
        html = html.replace("{{" + name + "}}", f"/dashboard/{name}?v={asset.digest}")
    return _asset(html.encode(), "text/html; charset=utf-8")


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison of `If-None-Match` (a list of tags, or `*`) with our ETag."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags


def _answer(request: Request, asset: Asset, cache_control: str,
            extra: dict[str, str] | None = None) -> Response:
    """The asset, or 304 when the browser's copy (`If-None-Match`) is current."""
    headers = {"Cache-Control": cache_control, "ETag": asset.etag, **COMMON_HEADERS,
               **(extra or {})}
    if _matches(request.headers.get("if-none-match", ""), asset.etag):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/", response_class=HTMLResponse,
            responses={200: {"description": "The dashboard page (HTML). It reads the /v1 API "
                                            "from the browser, with a bearer token if one is "
                                            "pasted into it."},
                       304: {"description": "Not Modified: the If-None-Match ETag is current."}})
async def dashboard(request: Request) -> Response:
    """The dashboard: sessions by name hierarchy, live results, per-epoch history charts."""
    return _answer(request, page(), NO_CACHE, {"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@router.get("/dashboard/{name}", include_in_schema=False)
async def dashboard_asset(name: str, request: Request, v: str = "") -> Response:
    """A script, style sheet or icon of the page; for a year when asked with its digest."""
    asset = assets().get(name)
    if asset is None:
        raise NotFound(f"no dashboard asset named {name!r}")
    return _answer(request, asset, IMMUTABLE if v == asset.digest else NO_CACHE)
