"""The committed OpenAPI document is the one the code serves (`make openapi` refreshes it)."""

from pathlib import Path

from app.openapi import document


def test_committed_openapi_is_current():
    committed = Path(__file__).parent.parent / "openapi" / "openapi.json"
    assert committed.read_text() == document(), "run `make openapi` and commit the result"
