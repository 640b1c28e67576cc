"""Metrics, operations over time and the unified log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from refactorbot import process_stats

from refactorbot_api import history
from refactorbot_api.routes.responses import R422
from refactorbot_api.schemas import LogPage, MetricsReport, OperationBucket


def router(host: Any) -> APIRouter:
    """Return the routes of ``/metrics``, ``/metrics/operations`` and ``/logs``."""
    api = APIRouter()

    @api.get("/metrics", response_model=MetricsReport, tags=["observe"], summary="Operation metrics and process")
    async def metrics() -> dict[str, Any]:
        return {
            "operations": host.metrics.snapshot(),
            "process": process_stats(),
            "resources": host.resources(),
        }

    @api.get("/metrics/operations", response_model=list[OperationBucket], tags=["observe"], responses=R422)
    async def operations_over_time(
        minutes: int = Query(60, ge=1, le=10_080, description="how far back to look"),
        slice_id: str | None = Query(None, min_length=1, max_length=200, description="only this slice"),
    ) -> list[dict[str, Any]]:
        """Return operations per slice per minute (count, errors, mean and max latency) for charts."""
        db = await host.master_db()
        return await history.operations_per_minute(db, minutes=minutes, slice_id=slice_id)

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
        contains: str | None = Query(
            None, min_length=1, max_length=200, description="only rows whose message contains this (any case)"
        ),
    ) -> dict[str, Any]:
        """Return the unified log, newest first, keyset-paged on the row id."""
        try:
            min_level = history.parse_level(level)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc), "errors": []}, status_code=422)  # type: ignore[return-value]
        items, next_id = await history.read_logs(
            await host.master_db(),
            slice_id=slice_id,
            min_level=min_level,
            since=since,
            until=until,
            before_id=before_id,
            limit=limit,
            contains=contains,
        )
        return {"items": items, "next_before_id": next_id}

    return api
