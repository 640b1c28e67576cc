"""Plugins and slices: list them, show one, start, stop, restart and reload it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from refactorbot import RefactorbotError, one_line

from refactorbot_api.routes.responses import R404, R409, R422
from refactorbot_api.routes.slots import SliceId, slice_class, status_row
from refactorbot_api.schemas import PluginInfo, SliceDetail, SliceStatus


def router(host: Any) -> APIRouter:
    """Return the routes of ``/plugins`` and ``/slices/{slice_id}[/start|/stop|/restart|/reload]``."""
    api = APIRouter()

    @api.get("/plugins", response_model=list[PluginInfo], tags=["host"], summary="Every plugin, failed ones too")
    async def plugins() -> list[dict[str, Any]]:
        return [record.to_dict() for record in host.plugins.sorted_records()]

    @api.get("/slices", response_model=list[SliceStatus], tags=["slices"], summary="Status of every slice")
    async def slices() -> list[dict[str, Any]]:
        return host.slice_status()  # type: ignore[no-any-return]

    @api.get("/slices/{slice_id}", response_model=SliceDetail, tags=["slices"], responses=R404 | R422)
    async def slice_detail(slice_id: str = SliceId) -> dict[str, Any]:
        """Return a slice's status and capabilities (operations with input and output JSON schemas)."""
        found = slice_class(host, slice_id)
        return {**status_row(host, slice_id), "capabilities": found.get_capabilities()}

    @api.post("/slices/{slice_id}/start", response_model=SliceStatus, tags=["slices"], responses=R404 | R422)
    async def start_slice(slice_id: str = SliceId) -> dict[str, Any]:
        """Start a stopped or failed slice; the answer says whether it now runs."""
        slice_class(host, slice_id)
        await host.start_slice(slice_id)
        return status_row(host, slice_id)

    @api.post("/slices/{slice_id}/stop", response_model=SliceStatus, tags=["slices"], responses=R404 | R422)
    async def stop_slice(slice_id: str = SliceId) -> dict[str, Any]:
        """Stop a running slice; it stays stopped until started."""
        slice_class(host, slice_id)
        await host.stop_slice(slice_id)
        return status_row(host, slice_id)

    @api.post("/slices/{slice_id}/restart", response_model=SliceStatus, tags=["slices"], responses=R404 | R422)
    async def restart_slice(slice_id: str = SliceId) -> dict[str, Any]:
        """Stop then start a slice."""
        slice_class(host, slice_id)
        await host.restart_slice(slice_id)
        return status_row(host, slice_id)

    @api.post(
        "/slices/{slice_id}/reload",
        response_model=SliceStatus,
        tags=["slices"],
        responses=R404 | R422 | {409: {**R409[409], "description": "The reload failed; the old version runs"}},
    )
    async def reload_slice(slice_id: str = SliceId) -> dict[str, Any]:
        """Restart a slice (and the other slices of its plugin) with the plugin's code installed now.

        Running requests finish first; the host and the other slices keep serving. A failed
        reload answers 409 saying why, and the old version keeps running.
        """
        slice_class(host, slice_id)
        try:
            await host.reload_slice(slice_id)
        except RefactorbotError as exc:
            raise HTTPException(409, one_line(exc)) from None
        return status_row(host, slice_id)

    return api
