"""The OpenAPI document the app serves, and `python -m app.openapi > openapi/openapi.json`.

FastAPI's own generation, completed: the `Problem` schema that every error answer uses
(`application/problem+json`; each route lists the statuses it can give through `errors(...)`
in its decorator), the bearer scheme so that `/docs` can send a token (auth itself stays in
`app.api.deps`: nothing here enforces anything), and without FastAPI's default 422
`HTTPValidationError`, a body this service never sends.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api.schemas import Problem

BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "A token of TALLY_TOKENS. Needed on every /v1 route and on /metrics when "
                   "the service has tokens configured; without them the service is open.",
}
FRAMEWORK_422 = "#/components/schemas/HTTPValidationError"
FRAMEWORK_SCHEMAS = ("HTTPValidationError", "ValidationError")


def tally_openapi(app: FastAPI) -> dict[str, Any]:
    """`app.openapi`: generated once, then cached on the app as FastAPI does."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        _add_problem(schema)
        _add_bearer(schema)
        _drop_framework_validation_errors(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def _operations(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, op) for path, item in schema.get("paths", {}).items() for op in item.values()]


def _add_problem(schema: dict[str, Any]) -> None:
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema()


def _add_bearer(schema: dict[str, Any]) -> None:
    schema["components"]["securitySchemes"] = {"bearer": BEARER}
    for path, operation in _operations(schema):
        if path.startswith("/v1/"):
            operation["security"] = [{"bearer": []}]


def _drop_framework_validation_errors(schema: dict[str, Any]) -> None:
    """FastAPI documents a 422 on every route with parameters unless the route declares its
    own; routes that cannot answer 422 get it anyway, with a schema we never send."""
    for _, operation in _operations(schema):
        answer = operation.get("responses", {}).get("422", {})
        if FRAMEWORK_422 in json.dumps(answer):
            del operation["responses"]["422"]
    schemas = schema["components"]["schemas"]
    for name in FRAMEWORK_SCHEMAS:
        schemas.pop(name, None)


def document() -> str:
    from app.api.app import create_app

    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(document(), end="")
