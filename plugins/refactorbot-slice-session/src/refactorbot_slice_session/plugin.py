"""Entry point of refactorbot-slice-session: registers the ``session`` slice."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register ``SessionSlice``."""
    from refactorbot_slice_session.slice import SessionSlice

    register(SessionSlice)
