"""The refactorbot agent: an LLM loop with tools, sessions and memory."""

from __future__ import annotations

__all__: list[str] = []
