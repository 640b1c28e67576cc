"""What plugins add through ``register_routes(router)``: ``/plugins/...`` (token required) and ``/hooks/...``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Security

from refactorbot_api.routes.responses import R401


class PluginRouter(APIRouter):
    """The router ``register_routes`` receives: routes under ``/plugins`` (token required).

    ``router.webhooks`` is a second router served under ``/hooks`` without the token, for
    platforms that call back (each such route must verify its own signature).
    """

    def __init__(self) -> None:
        super().__init__()
        self.webhooks = APIRouter()


def mount(app: FastAPI, host: Any, require_token: Any) -> None:
    """Collect every plugin's routes and serve them under ``/plugins`` and ``/hooks``.

    The ``/hooks`` router stays on ``app.state.webhooks``: ``HookPath`` serves its plain routes
    ahead of FastAPI's routing.
    """
    router = PluginRouter()
    host.plugins.call_isolated("register_routes", router=router)
    app.include_router(router, prefix="/plugins", dependencies=[Security(require_token)], responses=R401)
    app.include_router(router.webhooks, prefix="/hooks")
    app.state.webhooks = router.webhooks
