"""Default prompt templates and how they are filled in."""

from __future__ import annotations

import re

#: Placeholders a template may use; anything else in braces is left as written.
PLACEHOLDERS = ("date", "rules", "memories", "tools", "plan", "user_id")

DEFAULTS: dict[str, str] = {
    "system": (
        "You are refactorbot, a careful assistant that answers questions and gets work done with tools.\n"
        "Today is {date}.\n"
        "Use a tool when the task needs one; answer directly otherwise. Keep answers short and concrete.\n"
        "When you learn a lasting fact about the user (their name, a preference, a decision), add a line\n"
        "'REMEMBER: <the fact>' to your answer; it is kept for later conversations and not shown.\n"
        "{rules}\n{memories}\n{tools}\n{plan}"
    ),
    "planner": (
        "You are the planning step of refactorbot. Write a short numbered plan (at most 7 steps) for the\n"
        "request below, using these tools where they help: {tools}.\n"
        "Do not carry the plan out; answer with the plan only.\n{rules}\n{memories}"
    ),
    "tool_fallback": (
        "To use a tool, write one line per call, exactly:\n"
        "TOOL: <tool name> | PARAMS: <arguments as one JSON object>\n"
        "and nothing else in that message; the results come back in the next message.\n"
        "Available tools:\n{tools}"
    ),
}


def render(template: str, values: dict[str, str]) -> str:
    """Fill the known ``{placeholders}`` of ``template``; collapse the blank lines empty ones leave."""
    for key in PLACEHOLDERS:
        template = template.replace("{" + key + "}", values.get(key, ""))
    return re.sub(r"\n{3,}", "\n\n", template).strip()
