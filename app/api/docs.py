"""`/docs`: Swagger UI served by the app itself, so it works where no CDN can be reached.

The files come from the `swagger-ui-bundle-v2` distribution (Swagger UI's own release files
under its Apache-2.0 licence); only the three the page loads are served, from a fixed table,
never a path taken from the request. The page loads `/openapi.json`, whose bearer security
scheme gives Swagger UI its "Authorize" button: a token entered there is sent as
`Authorization: Bearer <token>` and kept across reloads (`persistAuthorization`). The
validator badge, which would call an outside service, is off.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

from app.errors import NotFound

DOCS_PATH = "/docs"
#: The Swagger UI files the page uses: name in the URL -> media type.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
ASSET_CACHE = "public, max-age=86400"
SWAGGER_UI_PARAMETERS = {"persistAuthorization": True, "validatorUrl": None,
                         "tryItOutEnabled": True}

router = APIRouter(include_in_schema=False)


def asset_file(name: str) -> Path:
    return Path(str(swagger_ui_path)) / name


@router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json", title="Tally API",
        swagger_js_url=f"{root}{DOCS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS_PATH}/favicon-32x32.png",
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS)


@router.get(DOCS_PATH + "/{asset}")
async def swagger_ui_asset(asset: str) -> FileResponse:
    if asset not in ASSETS:
        raise NotFound(f"no such file under {DOCS_PATH}/: {asset[:100]!r}; the page uses "
                       f"{', '.join(sorted(ASSETS))}")
    return FileResponse(asset_file(asset), media_type=ASSETS[asset],
                        headers={"Cache-Control": ASSET_CACHE})


def install(app: FastAPI) -> None:
    """Serve `/docs` from local files (create the app with `docs_url=None, redoc_url=None`:
    FastAPI's own pages load Swagger UI and ReDoc from a CDN)."""
    app.include_router(router)
