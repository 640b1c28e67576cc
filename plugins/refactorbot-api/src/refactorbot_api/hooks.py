"""``HookPath``: plain webhook routes under ``/hooks`` served without FastAPI's routing and middleware stack.

A chat platform's webhook is the API's busiest request, and its route needs nothing FastAPI adds: no
token (the route verifies its platform's signature itself), no parameters but the path's and the raw
request. FastAPI would match the path against every mounted route, solve the route's dependencies
and run the request through its middleware stack. ``HookPath`` sits in front of the application and
calls such a route's endpoint directly, inside the same guarantees:

- the body limit: a declared ``Content-Length`` over ``max_body_bytes`` is refused before this runs
  (``DeclaredBodyLimit``); a body sent without one is counted as it is read and answered 413 when it
  passes the limit, as FastAPI's ``max_body_size`` does;
- the request's server span (``TraceContext``) and the acknowledgement barrier (``CommitBeforeAnswer``'s
  ``CommittedSend``; for a plain ``Response``, whose body follows its start at once, one wait covers both);
- the application's exception handlers: an ``HTTPException`` is answered with its status and
  ``detail``, any other exception with the API's 500 (logged, with its cause).

A route qualifies when its endpoint is a coroutine function taking only ``str`` path parameters
(unconstrained) and the ``Request``, with no dependencies. Anything else under ``/hooks`` (a route with a body model, a
query parameter, a dependency), and every other path, goes through FastAPI unchanged.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path

from refactorbot_api.durability import CommittedSend
from refactorbot_api.limits import too_large_response
from refactorbot_api.tracecontext import TraceContext

PREFIX = "/hooks"


class _BodyTooLarge(Exception):
    """The body read so far is larger than ``max_body_bytes``."""


def is_plain(route: APIRoute) -> bool:
    """Return whether ``route``'s endpoint can be called with its path parameters and the request alone."""
    dependant = route.dependant
    if dependant.dependencies or dependant.query_params or dependant.header_params or dependant.cookie_params:
        return False
    if dependant.body_params or dependant.request_param_name is None or route.response_model is not None:
        return False
    others = (
        dependant.websocket_param_name,
        dependant.http_connection_param_name,
        dependant.response_param_name,
        dependant.background_tasks_param_name,
        dependant.security_scopes_param_name,
    )
    if any(name is not None for name in others):
        return False
    for field in dependant.path_params:  # any str, as the path gives it: nothing to validate or convert
        if field.field_info.annotation is not str or field.field_info.metadata or field.alias != field.name:
            return False
    return inspect.iscoroutinefunction(route.endpoint)


class HookPath:
    """ASGI layer: ``/hooks/...`` requests to a plain route go straight to its endpoint; the rest to ``app``."""

    def __init__(self, app: FastAPI, routes: list[Any], max_body_bytes: int) -> None:
        """``routes``: the routes of the router served under ``/hooks`` (paths relative to it)."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.routes: list[tuple[Any, dict[str, Any], set[str], APIRoute]] = []
        for route in routes:
            if isinstance(route, APIRoute) and is_plain(route):
                regex, _, convertors = compile_path(PREFIX + route.path)
                self.routes.append((regex, convertors, set(route.methods or ()), route))
        self.guarded = TraceContext(self._endpoint)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve a plain webhook route here; pass everything else to the application."""
        if scope["type"] == "http" and self.routes and scope["path"].startswith(PREFIX + "/"):
            path, method = scope["path"], scope["method"]
            for regex, convertors, methods, route in self.routes:
                found = regex.match(path)
                if found is not None and method in methods:
                    params = {name: convertors[name].convert(value) for name, value in found.groupdict().items()}
                    child = {"app": self.app, "route": route, "endpoint": route.endpoint, "path_params": params}
                    await self.guarded({**scope, **child}, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _endpoint(self, scope: Any, receive: Any, raw_send: Any) -> None:
        route: APIRoute = scope["route"]
        send = CommittedSend(scope, receive, raw_send)  # the acknowledgement barrier
        limit = self.max_body_bytes
        read = 0

        async def counted() -> Any:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    raise _BodyTooLarge
            return message

        started = False

        async def sending(message: Any) -> None:
            nonlocal started
            started = True
            await send(message)

        request = Request(scope, counted)
        try:
            request_param = route.dependant.request_param_name or "request"  # set: the route is plain
            answer = await route.endpoint(**scope["path_params"], **{request_param: request})
            if not isinstance(answer, Response):  # data, as FastAPI answers it with no response model
                from fastapi.datastructures import DefaultPlaceholder
                from fastapi.encoders import jsonable_encoder

                response_class: Any = route.response_class
                if isinstance(response_class, DefaultPlaceholder):
                    response_class = response_class.value
                answer = response_class(jsonable_encoder(answer), status_code=route.status_code or 200)
            # A plain Response sends its body right after its start: one wait covers both.
            send.one_piece = type(answer).__call__ is Response.__call__ and answer.background is None
            await answer(scope, receive, sending)
        except _BodyTooLarge:
            if started:
                raise
            await too_large_response(limit)(scope, receive, send)
        except Exception as exc:
            if started:
                raise
            await (await self._handle(request, exc))(scope, receive, send)

    async def _handle(self, request: Request, exc: Exception) -> Response:
        """Return the application's answer to ``exc``: its handler for the status or the exception's class."""
        handlers = self.app.exception_handlers
        handler = handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
        if handler is None:
            handler = next((handlers[kind] for kind in type(exc).__mro__ if kind in handlers), None)
        if handler is None:  # FastAPI always installs one for HTTPException; the API one for Exception
            raise exc
        answer = handler(request, exc)
        result: Response = await answer if inspect.isawaitable(answer) else answer
        return result
