"""Long-term memory for refactorbot: per-user memories, FTS5 search, tags, consolidation, retention."""

from __future__ import annotations

from refactorbot_slice_memory.query import match_expression

__all__ = ["match_expression"]
