"""Two seeded sessions and everything observable about them: the error tests check that a
refused request leaves all of it as it was."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from app.api.app import create_app
from app.settings import Settings
from app.store.base import Store


def seeded_client(settings: Settings, store: Store) -> Iterator[TestClient]:
    """A client of the app with a `Mean` session `m` and a `Precision` session `p`, each with
    one batch."""
    with TestClient(create_app(settings, store=store)) as c:
        c.put("/v1/sessions/m", json={"metric": "Mean"})
        c.put("/v1/sessions/p", json={"metric": "Precision"})
        c.post("/v1/sessions/m/update", json={"values": [1.0, 2.0]})
        c.post("/v1/sessions/p/update", json={"y_true": [1, 0], "y_pred": [0.9, 0.8]})
        yield c


def observable(client: TestClient) -> list[Any]:
    """Both sessions' documents, variables and histories, and the listing."""
    return [(client.get(f"/v1/sessions/{n}").json(), client.get(f"/v1/sessions/{n}/variables")
             .json(), client.get(f"/v1/sessions/{n}/history").json()) for n in ("m", "p")] + [
        client.get("/v1/sessions").json()]
