"""The seed's HTTP endpoints, served by the control API under ``/plugins/refactory/`` (bearer token required).

Each route runs the slice's operation through the host (``host.route``), so validation, limits, the
operation log and hooks apply as for ``POST /slices/refactory/operations/...``. A refused payload is
422 with the operation's one-line reason, an unknown record 404, a refused step 409.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations at run time.
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter

PREFIX = "/refactory"


def add_routes(router: "APIRouter") -> None:
    """Add the refactory endpoints to ``router`` (a FastAPI ``APIRouter`` mounted under ``/plugins``)."""
    from fastapi import Body, HTTPException, Query, Request
    from refactorbot import SliceRequest

    async def call(request: Request, operation: str, payload: dict[str, Any]) -> Any:
        host = request.app.state.host
        response = await host.route(SliceRequest(slice_id="refactory", operation=operation, payload=payload))
        if response.success:
            return response.data
        kind = getattr(response.error_type, "value", response.error_type)
        message = response.error_message or "failed"
        if kind == "invalid_payload":
            raise HTTPException(422, message)
        if kind == "slice_unavailable":
            raise HTTPException(503, message)
        if message.startswith("no "):
            raise HTTPException(404, message)
        raise HTTPException(409, message)

    tags: list[str | Enum] = ["refactory"]

    @router.post(PREFIX + "/requests", tags=tags, summary="Create a request")
    async def create_request(request: Request, body: dict[str, Any] = Body(...)) -> Any:
        return await call(request, "create_request", body)

    @router.get(PREFIX + "/requests", tags=tags, summary="List requests")
    async def list_requests(request: Request, limit: int = Query(100)) -> Any:
        return await call(request, "list_requests", {"limit": limit})

    @router.get(PREFIX + "/requests/{request_id}", tags=tags, summary="One request")
    async def get_request(request: Request, request_id: int) -> Any:
        return await call(request, "get_request", {"id": request_id})

    @router.post(PREFIX + "/requests/{request_id}/plans", tags=tags, summary="Plan a request")
    async def create_plan(request: Request, request_id: int, body: dict[str, Any] | None = Body(None)) -> Any:
        return await call(request, "create_plan", {**(body or {}), "request_id": request_id})

    @router.get(PREFIX + "/plans/{plan_id}", tags=tags, summary="A plan, its tasks and board")
    async def get_plan(request: Request, plan_id: int) -> Any:
        return await call(request, "get_plan", {"id": plan_id})

    @router.post(PREFIX + "/plans/{plan_id}/orchestrate", tags=tags, summary="Assign and run the tasks")
    async def orchestrate(request: Request, plan_id: int, body: dict[str, Any] | None = Body(None)) -> Any:
        return await call(request, "orchestrate", {**(body or {}), "plan_id": plan_id})

    @router.post(PREFIX + "/plans/{plan_id}/reconcile", tags=tags, summary="Resume an interrupted orchestration")
    async def reconcile(request: Request, plan_id: int) -> Any:
        return await call(request, "reconcile", {"plan_id": plan_id})

    @router.get(PREFIX + "/orchestrations/{orch_id}", tags=tags, summary="An orchestration, its queue and report")
    async def get_orchestration(request: Request, orch_id: int) -> Any:
        return await call(request, "get_orchestration", {"id": orch_id})

    @router.get(PREFIX + "/tasks", tags=tags, summary="List tasks")
    async def list_tasks(
        request: Request,
        planId: int | None = Query(None),
        state: str | None = Query(None),
        agent: str | None = Query(None),
        limit: int = Query(200),
    ) -> Any:
        payload = {"plan_id": planId, "state": state, "agent": agent, "limit": limit}
        return await call(request, "list_tasks", {k: v for k, v in payload.items() if v is not None})

    @router.get(PREFIX + "/tasks/{task_id}", tags=tags, summary="One task with diff, tests and review")
    async def get_task(request: Request, task_id: int) -> Any:
        return await call(request, "get_task", {"id": task_id})

    @router.post(PREFIX + "/tasks/{task_id}/claim", tags=tags, summary="An external coder starts a task")
    async def claim(request: Request, task_id: int, body: dict[str, Any] = Body(...)) -> Any:
        return await call(request, "claim_task", {**body, "id": task_id})

    @router.post(PREFIX + "/agents/{agent}/prs", tags=tags, summary="A coder reports a task done")
    async def report(request: Request, agent: str, body: dict[str, Any] = Body(...)) -> Any:
        return await call(request, "report_pr", {**body, "agent": agent})
