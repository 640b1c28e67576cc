"""The ``{slice_id}`` path parameter and the slot it names (404 when unknown, 409 when not running)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Path

SliceId = Path(description="id of an installed and enabled slice", max_length=200)


def slot(host: Any, slice_id: str) -> Any:
    """Return the slot of ``slice_id``; 404 naming the installed slices when there is none."""
    found = host.slots.get(slice_id)
    if found is None:
        known = ", ".join(sorted(host.slots)) or "none"
        raise HTTPException(404, f"unknown slice '{slice_id}' (installed and enabled: {known})")
    return found


def status_row(host: Any, slice_id: str) -> dict[str, Any]:
    """Return the ``slice_status()`` row of ``slice_id``."""
    return next(row for row in host.slice_status() if row["slice_id"] == slice_id)


def running_instance(host: Any, slice_id: str) -> Any:
    """Return the running instance of ``slice_id``; 409 when it is not running."""
    found = slot(host, slice_id)
    if found.instance is None:
        raise HTTPException(409, f"slice '{slice_id}' is {found.status}; start it first")
    return found.instance
