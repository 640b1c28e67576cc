"""``create_app(host)``: the FastAPI application of the control API."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from refactorbot._version import __version__
from refactorbot.errors import ConfigError, describe_validation_error
from refactorbot.models import (
    ImprovementFeedback,
    ImprovementPlan,
    IncomingMessage,
    OutgoingMessage,
    SliceRequest,
    SliceResponse,
)
from refactorbot.resources import process_stats

from refactorbot_api import history, settings_file
from refactorbot_api.auth import UNAUTHORIZED, BearerGuard, ensure_token, token_matches
from refactorbot_api.config import ApiConfig
from refactorbot_api.durability import CommitBeforeAnswer
from refactorbot_api.limits import too_large_response
from refactorbot_api.schemas import (
    ChatRequest,
    DiagnosticsResult,
    ErrorBody,
    Health,
    LogPage,
    MetricsReport,
    OperationBucket,
    PluginInfo,
    SettingsUpdated,
    SettingsView,
    SliceDetail,
    SliceStatus,
    ValidationErrorBody,
)

log = logging.getLogger("refactorbot.api")


class PluginRouter(APIRouter):
    """The router ``register_routes`` receives: routes under ``/plugins`` (token required).

    ``router.webhooks`` is a second router served under ``/hooks`` without the token, for
    platforms that call back (each such route must verify its own signature).
    """

    def __init__(self) -> None:
        super().__init__()
        self.webhooks = APIRouter()


R400: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody, "description": "The body could not be parsed"}}
R401: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody, "description": "Missing or wrong bearer token"}}
R404: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "Unknown slice or operation"}}
R409: dict[int | str, dict[str, Any]] = {409: {"model": ErrorBody, "description": "The slice is not running"}}
R422: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrorBody, "description": "Invalid request; `detail` says why"}
}
R500: dict[int | str, dict[str, Any]] = {
    500: {"model": ErrorBody, "description": "The slice or plugin failed while handling the request"}
}
R503: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "Chat is unavailable (no agent slice running)"}
}

SliceId = Path(description="id of an installed and enabled slice", max_length=200)


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

    _install_error_handlers(app, config)
    strict_query = Depends(reject_unknown_query)

    @app.get("/health", response_model=Health, tags=["host"], summary="Liveness (no token needed)")
    async def health() -> Health:
        return Health(version=__version__, slices_running=len(host.running_slices()), slices_total=len(host.slots))

    api = APIRouter(dependencies=[Security(require_token), strict_query], responses=R401)
    _slice_routes(api, host)
    _observe_routes(api, host)
    _settings_routes(api, host)
    _chat_routes(api, host, app)
    app.include_router(api)
    _plugin_routes(app, host, require_token)
    app.add_middleware(CommitBeforeAnswer)  # inside the guard: refused requests never wait on commits
    app.add_middleware(BearerGuard, token=token)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """Return the OpenAPI document with every 422 and 400 answer described as this API sends them."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ValidationErrorBody"] = ValidationErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
    ours = {"application/json": {"schema": {"$ref": "#/components/schemas/ValidationErrorBody"}}}
    errors = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for methods in document.get("paths", {}).values():
        for operation in methods.values():
            responses = operation.get("responses", {})
            if "422" in responses:
                responses["422"]["content"] = ours
            if "requestBody" in operation and "400" not in responses:
                responses["400"] = {"description": "The body could not be parsed", "content": errors}
            if "requestBody" in operation and "413" not in responses:
                responses["413"] = {
                    "description": "The body is larger than [plugins.api] max_body_bytes",
                    "content": errors,
                }
    schemas.pop("HTTPValidationError", None)
    if '"#/components/schemas/ValidationError"' not in json.dumps(document):
        schemas.pop("ValidationError", None)
    app.openapi_schema = document
    return document


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


def _install_error_handlers(app: FastAPI, config: ApiConfig) -> None:
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


def _slot(host: Any, slice_id: str) -> Any:
    slot = host.slots.get(slice_id)
    if slot is None:
        known = ", ".join(sorted(host.slots)) or "none"
        raise HTTPException(404, f"unknown slice '{slice_id}' (installed and enabled: {known})")
    return slot


def _status_row(host: Any, slice_id: str) -> dict[str, Any]:
    return next(row for row in host.slice_status() if row["slice_id"] == slice_id)


def _running_instance(host: Any, slice_id: str) -> Any:
    slot = _slot(host, slice_id)
    if slot.instance is None:
        raise HTTPException(409, f"slice '{slice_id}' is {slot.status}; start it first")
    return slot.instance


def _slice_routes(api: APIRouter, host: Any) -> None:
    @api.get("/plugins", response_model=list[PluginInfo], tags=["host"], summary="Every plugin, failed ones too")
    async def plugins() -> list[dict[str, Any]]:
        return [record.to_dict() for record in host.plugins.sorted_records()]

    @api.get("/slices", response_model=list[SliceStatus], tags=["slices"], summary="Status of every slice")
    async def slices() -> list[dict[str, Any]]:
        return host.slice_status()  # type: ignore[no-any-return]

    @api.get("/slices/{slice_id}", response_model=SliceDetail, tags=["slices"], responses=R404 | R422)
    async def slice_detail(slice_id: str = SliceId) -> dict[str, Any]:
        """Return a slice's status and capabilities (operations with input and output JSON schemas)."""
        slot = _slot(host, slice_id)
        return {**_status_row(host, slice_id), "capabilities": slot.cls.get_capabilities()}

    @api.post("/slices/{slice_id}/start", response_model=SliceStatus, tags=["slices"], responses=R404 | R422)
    async def start_slice(slice_id: str = SliceId) -> dict[str, Any]:
        """Start a stopped or failed slice; the answer says whether it now runs."""
        _slot(host, slice_id)
        await host.start_slice(slice_id)
        return _status_row(host, slice_id)

    @api.post("/slices/{slice_id}/stop", response_model=SliceStatus, tags=["slices"], responses=R404 | R422)
    async def stop_slice(slice_id: str = SliceId) -> dict[str, Any]:
        """Stop a running slice; it stays stopped until started."""
        _slot(host, slice_id)
        await host.stop_slice(slice_id)
        return _status_row(host, slice_id)

    @api.post("/slices/{slice_id}/restart", response_model=SliceStatus, tags=["slices"], responses=R404 | R422)
    async def restart_slice(slice_id: str = SliceId) -> dict[str, Any]:
        """Stop then start a slice."""
        _slot(host, slice_id)
        await host.restart_slice(slice_id)
        return _status_row(host, slice_id)

    @api.post(
        "/slices/{slice_id}/operations/{operation}",
        response_model=SliceResponse,
        tags=["slices"],
        responses=R400 | R404 | R422,
    )
    async def run_operation(
        slice_id: str = SliceId,
        operation: str = Path(description="operation name, as listed in the slice's capabilities", max_length=200),
        payload: dict[str, Any] | None = Body(None, description="the operation's parameters (see its input schema)"),
    ) -> SliceResponse:
        """Run one operation. The payload is validated by the operation's schema first (422 when invalid);
        a routed request always answers 200 with a `SliceResponse` whose `success` tells the outcome."""
        slot = _slot(host, slice_id)
        spec = slot.cls.operations().get(operation)
        if spec is None:
            names = ", ".join(sorted(slot.cls.operations())) or "none"
            raise HTTPException(404, f"slice '{slice_id}' has no operation '{operation}' (available: {names})")
        try:
            spec.input_model.model_validate(payload or {})
        except ValidationError as exc:
            message = f"invalid payload for {slice_id}.{operation}: {describe_validation_error(exc)}"
            errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
            return JSONResponse({"detail": message, "errors": errors}, status_code=422)  # type: ignore[return-value]
        request = SliceRequest(slice_id=slice_id, operation=operation, payload=payload or {})
        return await host.route(request)  # type: ignore[no-any-return]

    @api.post(
        "/slices/{slice_id}/diagnostics",
        response_model=DiagnosticsResult,
        tags=["slices"],
        responses=R404 | R409 | R422 | R500,
    )
    async def diagnostics(slice_id: str = SliceId) -> dict[str, Any]:
        """Run the slice's self-diagnostics (health, database integrity, migrations, schemas, error rates)."""
        report = await _running_instance(host, slice_id).run_self_diagnostics()
        return {**report.model_dump(), "passed": report.passed}

    @api.post(
        "/slices/{slice_id}/self-improve",
        response_model=ImprovementPlan,
        tags=["slices"],
        responses=R400 | R404 | R409 | R422 | R500,
    )
    async def self_improve(
        slice_id: str = SliceId, feedback: ImprovementFeedback | None = Body(None)
    ) -> ImprovementPlan:
        """Ask the slice for an improvement plan (proposals only; nothing is applied)."""
        instance = _running_instance(host, slice_id)
        return await instance.self_improve(feedback or ImprovementFeedback())  # type: ignore[no-any-return]


def _observe_routes(api: APIRouter, host: Any) -> None:
    @api.get("/metrics", response_model=MetricsReport, tags=["observe"], summary="Operation metrics and process")
    async def metrics() -> dict[str, Any]:
        return {
            "operations": host.metrics.snapshot(),
            "process": process_stats(),
            "resources": host.allocator.snapshot(),
        }

    @api.get("/metrics/operations", response_model=list[OperationBucket], tags=["observe"], responses=R422)
    async def operations_over_time(
        minutes: int = Query(60, ge=1, le=10_080, description="how far back to look"),
        slice_id: str | None = Query(None, min_length=1, max_length=200, description="only this slice"),
    ) -> list[dict[str, Any]]:
        """Return operations per slice per minute (count, errors, mean and max latency) for charts."""
        await host.state.flush()
        return await history.operations_per_minute(host.state.db, minutes=minutes, slice_id=slice_id)

    @api.get("/logs", response_model=LogPage, tags=["observe"], responses=R422)
    async def logs(
        slice_id: str | None = Query(None, min_length=1, max_length=200, description="only this slice's rows"),
        level: str | None = Query(
            None,
            pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL|[0-9]{1,2})$",
            description="minimum level: DEBUG, INFO, WARNING, ERROR, CRITICAL or a number",
        ),
        since: float | None = Query(None, ge=0, le=1e11, description="Unix time, inclusive"),
        until: float | None = Query(None, ge=0, le=1e11, description="Unix time, exclusive"),
        before_id: int | None = Query(None, ge=1, le=2**62, description="page: rows with a smaller id"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Return the unified log, newest first, keyset-paged on the row id."""
        try:
            min_level = history.parse_level(level)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc), "errors": []}, status_code=422)  # type: ignore[return-value]
        await host.state.flush()
        items, next_id = await history.read_logs(
            host.state.db,
            slice_id=slice_id,
            min_level=min_level,
            since=since,
            until=until,
            before_id=before_id,
            limit=limit,
        )
        return {"items": items, "next_before_id": next_id}


def _settings_view(host: Any) -> dict[str, Any]:
    path = settings_file.config_path(host.settings)
    try:
        document = settings_file.read_file(path)
    except ConfigError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"config_file": str(path), "exists": path.is_file(), "sections": settings_file.mask(document)}


def _settings_routes(api: APIRouter, host: Any) -> None:
    writing = asyncio.Lock()  # one read-modify-write of the file at a time

    @api.get("/settings", response_model=SettingsView, tags=["settings"], responses=R409)
    async def get_settings() -> dict[str, Any]:
        """Return ``refactorbot.toml`` with every credential masked (secret-named keys, key-shaped values, URLs)."""
        return _settings_view(host)

    @api.put("/settings/{section}", response_model=SettingsUpdated, tags=["settings"], responses=R400 | R409 | R422)
    async def put_settings(
        section: str = Path(
            pattern=r"^(core|llm|resources|(slices|gateways|tools|channels|plugins)\.[A-Za-z0-9_-]{1,64})$",
            description="core, llm, resources, or slices/gateways/tools/channels/plugins.<name>",
        ),
        values: dict[str, Any] = Body(description="the whole table; '***' keeps a masked secret unchanged"),
    ) -> dict[str, Any]:
        """Validate one TOML section and write ``refactorbot.toml`` atomically; takes effect at restart."""
        path = settings_file.config_path(host.settings)
        async with writing:
            try:
                current = settings_file.read_file(path)
                kind, name = settings_file.split_section(section)
                registry = host.plugins.registry
                registered = registry.slices.get(name) if kind == "slices" else None
                model = registered.obj.Config if registered is not None else None
                document = settings_file.updated_document(
                    current, section, values, host.settings, model, registry=registry, env=host.env
                )
            except ConfigError as exc:
                return JSONResponse({"detail": str(exc), "errors": []}, status_code=422)  # type: ignore[return-value]
            await asyncio.to_thread(settings_file.write_atomically, path, document)
        return {**_settings_view(host), "section": section, "restart_required": True}


def _chat_routes(api: APIRouter, host: Any, app: FastAPI) -> None:
    def master_chat() -> Any:
        try:
            chat_module = importlib.import_module("refactorbot.chat")
            master_chat_class = chat_module.MasterChat
        except (ImportError, AttributeError):
            raise HTTPException(503, "chat is unavailable: this refactorbot-core has no MasterChat") from None
        if not host.has_slice("agent"):
            raise HTTPException(
                503, "chat is unavailable: the agent slice is not running (install refactorbot-slice-agent)"
            )
        return master_chat_class(host)

    def incoming(message: ChatRequest) -> IncomingMessage:
        return IncomingMessage(
            channel="api",
            chat_id=message.chat_id,
            sender_id=message.sender_id,
            sender_name=message.sender_name,
            text=message.text,
        )

    def log_failure(path: str, message: ChatRequest, reply: OutgoingMessage | None) -> None:
        """Log a turn the agent could not answer (the reply says so; the server's log says why)."""
        if reply is None or reply.metadata.get("ok", True):
            return
        why = reply.metadata.get("error") or "; ".join(reply.metadata.get("degraded") or []) or "a limit was hit"
        log.warning("POST %s: the turn of chat %r failed: %s", path, message.chat_id, why)

    @api.post("/chat", response_model=OutgoingMessage, tags=["chat"], responses=R400 | R422 | R500 | R503)
    async def chat(message: ChatRequest) -> OutgoingMessage:
        """Send a message through ``MasterChat`` (session, memory, agent) and return the reply."""
        reply: OutgoingMessage = await master_chat().process_message(incoming(message))
        log_failure("/chat", message, reply)
        return reply

    @api.post(
        "/chat/stream",
        tags=["chat"],
        responses=R400
        | R422
        | R500
        | R503
        | {
            200: {
                "description": 'One JSON object a line: {"delta": text} as the answer arrives, then {"reply": ...}',
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            }
        },
        response_class=StreamingResponse,
    )
    async def chat_stream(message: ChatRequest) -> StreamingResponse:
        """Like ``/chat``, streamed as NDJSON: ``{"delta": text}`` lines as the answer arrives, then ``{"reply": ...}``."""
        chatter = master_chat()

        async def lines() -> AsyncIterator[bytes]:
            async for delta in chatter.stream_message(incoming(message)):
                yield (json.dumps({"delta": delta}) + "\n").encode()
            reply = chatter.last_reply
            log_failure("/chat/stream", message, reply)
            yield (json.dumps({"reply": reply.model_dump(mode="json") if reply else None}) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")


def _plugin_routes(app: FastAPI, host: Any, require_token: Any) -> None:
    router = PluginRouter()
    host.plugins.call_isolated("register_routes", router=router)
    app.include_router(router, prefix="/plugins", dependencies=[Security(require_token)], responses=R401)
    app.include_router(router.webhooks, prefix="/hooks")
