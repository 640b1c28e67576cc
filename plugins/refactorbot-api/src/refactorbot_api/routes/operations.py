"""A slice's operations, self-diagnostics and self-improvement plan."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException, Path
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from refactorbot import ImprovementFeedback, ImprovementPlan, SliceRequest, SliceResponse, describe_validation_error

from refactorbot_api.routes.responses import R400, R404, R409, R422, R500
from refactorbot_api.routes.slots import SliceId, running_instance, slice_class
from refactorbot_api.schemas import DiagnosticsResult


def router(host: Any) -> APIRouter:
    """Return the routes of ``/slices/{slice_id}/operations/{operation}``, ``/diagnostics``, ``/self-improve``."""
    api = APIRouter()

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
        found = slice_class(host, slice_id)
        spec = found.operations().get(operation)
        if spec is None:
            names = ", ".join(sorted(found.operations())) or "none"
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
        report = await running_instance(host, slice_id).run_self_diagnostics()
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
        instance = running_instance(host, slice_id)
        return await instance.self_improve(feedback or ImprovementFeedback())  # type: ignore[no-any-return]

    return api
