"""How the control API refuses a request and reports a failure: unknown query parameters, 413, 422, 500."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from refactorbot_api.config import ApiConfig
from refactorbot_api.limits import too_large_response

log = logging.getLogger("refactorbot.api")


def _query_names(dependant: Any) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def reject_unknown_query(request: Request) -> None:
    """Refuse query parameters the route does not declare (a typo would otherwise be ignored)."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": f"unknown query parameter (allowed: {allowed})",
                    "type": "extra_forbidden",
                }
                for name in unknown
            ]
        )


def install_error_handlers(app: FastAPI, config: ApiConfig) -> None:
    """Answer 413 with the body limit, 422 with a one-line ``detail`` plus ``errors``, 500 with the cause."""

    @app.exception_handler(413)
    async def body_too_large(request: Request, exc: Exception) -> JSONResponse:
        return too_large_response(config.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:3]]
        detail = "invalid request: " + ("; ".join(parts) or "malformed")
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("API %s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)
