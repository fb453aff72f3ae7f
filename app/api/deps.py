"""Dependencies shared by the routers: the services, the settings, and authorisation.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in the thread pool, one
thread hop per dependency and request, which the hot routes (update, result) cannot afford."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from app.errors import Forbidden, Unauthorized
from app.service import Sessions
from app.settings import Scope, Settings, TokenGrant

#: A scope grants itself and the ones below it: admin > write > read. `read` is every GET,
#: `write` what a trainer does (create, update, merge, reset), `admin` also deletes.
SCOPE_RANK = {"read": 0, "write": 1, "admin": 2}


async def get_sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SessionsDep = Annotated[Sessions, Depends(get_sessions)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _grant(request: Request, settings: Settings) -> TokenGrant | None:
    """The caller's grant; None when the service is open (no tokens configured)."""
    if not settings.tokens:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("this service needs 'Authorization: Bearer <token>'")
    for known, grant in settings.tokens.items():
        if hmac.compare_digest(known.encode(), token.strip().encode()):
            return grant
    raise Unauthorized("the bearer token is not valid")


def _has_scope(grant: TokenGrant, scope: Scope) -> bool:
    return max(SCOPE_RANK[s] for s in grant.scopes) >= SCOPE_RANK[scope]


async def require(request: Request, scope: Scope) -> TokenGrant | None:
    """The caller's grant if its token carries `scope` and covers the path's session name;
    None when the service is open."""
    grant = _grant(request, request.app.state.settings)
    if grant is None:
        return None
    if not _has_scope(grant, scope):
        raise Forbidden(f"this token has scopes {grant.scopes}; the request needs {scope!r}")
    name = request.path_params.get("name")
    if name is not None and not name.startswith(grant.prefix):
        raise Forbidden(f"this token is limited to sessions named {grant.prefix!r}...; "
                        f"got {name!r}")
    return grant


def authorize(scope: Scope) -> object:
    """A dependency: `require(request, scope)`."""

    async def check(request: Request) -> TokenGrant | None:
        return await require(request, scope)

    return Depends(check)


Read = Annotated[TokenGrant | None, authorize("read")]
Write = Annotated[TokenGrant | None, authorize("write")]
Admin = Annotated[TokenGrant | None, authorize("admin")]
