"""A cheap, dependency-free token estimate used for budgets and analytics."""

from __future__ import annotations

import json
from typing import Any

#: Per-message overhead (role, separators) that chat formats add around the content.
MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """Return roughly how many tokens ``text`` costs: one per four characters, at least one."""
    return max(1, (len(text) + 3) // 4)


def message_tokens(content: str, tool_calls: list[dict[str, Any]] | None = None) -> int:
    """Return the estimated cost of one chat message, tool calls and overhead included."""
    total = MESSAGE_OVERHEAD + estimate_tokens(content)
    if tool_calls:
        total += estimate_tokens(json.dumps(tool_calls, separators=(",", ":")))
    return total
