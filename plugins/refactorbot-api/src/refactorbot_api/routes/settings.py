"""``refactorbot.toml`` through the API: read it masked, validate and write one section."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, HTTPException, Path
from fastapi.responses import JSONResponse
from refactorbot import ConfigError

from refactorbot_api import settings_file
from refactorbot_api.routes.responses import R400, R409, R422
from refactorbot_api.schemas import SettingsUpdated, SettingsView


def _settings_view(host: Any) -> dict[str, Any]:
    path = settings_file.config_path(host.settings)
    try:
        document = settings_file.read_file(path)
    except ConfigError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"config_file": str(path), "exists": path.is_file(), "sections": settings_file.mask(document)}


def router(host: Any) -> APIRouter:
    """Return the routes of ``/settings`` and ``/settings/{section}``."""
    api = APIRouter()
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

    return api
