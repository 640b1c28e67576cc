"""Entry point of refactorbot-slice-memory: registers the ``memory`` slice."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register ``MemorySlice``."""
    from refactorbot_slice_memory.slice import MemorySlice

    register(MemorySlice)
