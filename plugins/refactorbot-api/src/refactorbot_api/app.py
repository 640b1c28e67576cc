"""``create_app(host)``: the FastAPI application of the control API.

The application is assembled here from its parts: the error handlers and query check (``errors``),
the routers of each area (``routes``), the middleware (``auth``, ``durability``) and the OpenAPI
document (``openapi``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from refactorbot import __version__

from refactorbot_api.auth import UNAUTHORIZED, BearerGuard, ensure_token, token_matches
from refactorbot_api.config import ApiConfig
from refactorbot_api.durability import CommitBeforeAnswer
from refactorbot_api.errors import install_error_handlers, reject_unknown_query
from refactorbot_api.openapi import openapi_document
from refactorbot_api.routes import chat, observe, operations, plugin_routes, settings, slices
from refactorbot_api.routes.responses import R401
from refactorbot_api.schemas import Health


def create_app(host: Any, token: str | None = None, config: ApiConfig | None = None) -> FastAPI:
    """Return the control API of ``host`` (a ``MasterCore``).

    ``token`` defaults to ``<home>/api-token``, ``config`` to the host's ``[plugins.api]``.
    """
    token = token or ensure_token(host.home)
    config = config or host.settings.section("plugins", "api", ApiConfig, host.env)
    app = FastAPI(
        max_body_size=config.max_body_bytes,  # larger bodies: 413 before they are read
        docs_url=None,  # an interactive page cannot send the bearer token; fetch /openapi.json with it
        redoc_url=None,
        title="refactorbot control API",
        version=__version__,
        description=(
            "Control and observe a running refactorbot host. Every endpoint except `/health` (and the"
            " `/hooks/...` webhooks of plugins, which verify their own signatures) needs"
            " `Authorization: Bearer <token>`, this document included; the token is in `<home>/api-token`."
        ),
    )
    app.state.host = host
    bearer = HTTPBearer(auto_error=False, description="The token stored in `<home>/api-token`.")

    async def require_token(credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        given = None if credentials is None else f"Bearer {credentials.credentials}"
        if not token_matches(token, given):
            raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})

    install_error_handlers(app, config)

    @app.get("/health", response_model=Health, tags=["host"], summary="Liveness (no token needed)")
    async def health() -> Health:
        return Health(
            version=__version__, slices_running=len(host.running_slices()), slices_total=len(host.slice_ids())
        )

    api = APIRouter(dependencies=[Security(require_token), Depends(reject_unknown_query)], responses=R401)
    for area in (slices, operations, observe, settings, chat):
        api.include_router(area.router(host))
    app.include_router(api)
    plugin_routes.mount(app, host, require_token)
    app.add_middleware(CommitBeforeAnswer)  # inside the guard: refused requests never wait on commits
    app.add_middleware(BearerGuard, token=token)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app
