"""Print the OpenAPI document: `python -m app.openapi > openapi/openapi.json`."""

from __future__ import annotations

import json

from app.api.app import create_app


def document() -> str:
    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(document(), end="")
