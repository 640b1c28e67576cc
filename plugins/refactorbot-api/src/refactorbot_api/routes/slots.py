"""The ``{slice_id}`` path parameter and the slice it names (404 when unknown, 409 when not running)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Path

SliceId = Path(description="id of an installed and enabled slice", max_length=200)


def slice_class(host: Any, slice_id: str) -> Any:
    """Return the class of ``slice_id``; 404 naming the installed slices when there is none."""
    found = host.slice_class(slice_id)
    if found is None:
        known = ", ".join(host.slice_ids()) or "none"
        raise HTTPException(404, f"unknown slice '{slice_id}' (installed and enabled: {known})")
    return found


def status_row(host: Any, slice_id: str) -> dict[str, Any]:
    """Return the ``slice_status()`` row of ``slice_id``."""
    return next(row for row in host.slice_status() if row["slice_id"] == slice_id)


def running_instance(host: Any, slice_id: str) -> Any:
    """Return the running instance of ``slice_id``; 409 when it is not running."""
    slice_class(host, slice_id)
    instance = host.instance(slice_id)
    if instance is None:
        raise HTTPException(409, f"slice '{slice_id}' is {status_row(host, slice_id)['status']}; start it first")
    return instance
