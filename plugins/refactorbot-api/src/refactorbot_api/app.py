"""``create_app(host)``: the FastAPI application of the control API.

The application is assembled here from its parts: the error handlers and query check (``errors``),
the routers of each area (``routes``), the middleware (``auth``, ``durability``) and the OpenAPI
document (``openapi``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from refactorbot import __version__

from refactorbot_api.auth import SCRAPE_PATH, UNAUTHORIZED, BearerGuard, ensure_token, token_matches
from refactorbot_api.config import ApiConfig
from refactorbot_api.durability import CommitBeforeAnswer
from refactorbot_api.errors import install_error_handlers, reject_unknown_query
from refactorbot_api.openapi import openapi_document
from refactorbot_api.routes import chat, observe, operations, plugin_routes, settings, slices
from refactorbot_api.routes.responses import R401
from refactorbot_api.schemas import Health
from refactorbot_api.tracecontext import TraceContext


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
    scrape_token = _scrape_token(config, host)

    async def require_scrape_token(credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        given = None if credentials is None else f"Bearer {credentials.credentials}"
        if not token_matches(token, given) and not (scrape_token and token_matches(scrape_token, given)):
            raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})

    @app.get(
        SCRAPE_PATH,
        tags=["observe"],
        summary="Metrics in the Prometheus text format",
        dependencies=[Security(require_scrape_token), Depends(reject_unknown_query)],
        responses={
            **R401,
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "Prometheus text format 0.0.4",
            },
        },
        response_class=Response,
    )
    async def prometheus_metrics() -> Response:
        """Return operations and latencies (histograms), LLM calls, tokens and cost, tool calls, channel
        messages, the event bus's lag and each slice up or down, for a Prometheus scrape.

        The bearer token, or the scrape token named by ``[plugins.api] scrape_token_env``, is accepted.
        """
        from refactorbot_api.prometheus import CONTENT_TYPE, render

        return Response(render(host), media_type=CONTENT_TYPE)

    plugin_routes.mount(app, host, require_token)
    app.add_middleware(CommitBeforeAnswer)  # inside the guard: refused requests never wait on commits
    app.add_middleware(TraceContext)  # inside the guard: refused requests make no span
    app.add_middleware(BearerGuard, token=token, scrape_token=scrape_token)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app


def _scrape_token(config: ApiConfig, host: Any) -> str | None:
    """Return the scrape token from the variable ``scrape_token_env`` names (``None``: none set)."""
    if config.scrape_token_env is None:
        return None
    import os

    env = os.environ if host.env is None else host.env
    value = (env.get(config.scrape_token_env) or "").strip()
    return value or None
