"""Conversation sessions for refactorbot: history, token budgets, archival and analytics."""

from __future__ import annotations

from refactorbot_slice_session.tokens import estimate_tokens

__all__ = ["estimate_tokens"]
