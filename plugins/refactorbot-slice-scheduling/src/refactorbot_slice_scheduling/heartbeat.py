"""The heartbeat: every N minutes, in active hours, the agent reads ``HEARTBEAT.md`` and reports what needs doing.

A file with no active task (only headings, comments, blank lines and ticked boxes) costs no model
call. The agent answers ``HEARTBEAT_OK`` when nothing needs attention; that answer is dropped, and
anything else is delivered to the configured channel and chat.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from refactorbot_slice_scheduling.schedules import zone

HEARTBEAT_FILE = "HEARTBEAT.md"
OK = "HEARTBEAT_OK"
_DONE = re.compile(r"^\s*[-*+]\s+\[[xX]\]")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
PROMPT = (
    "This is your scheduled heartbeat. Below is HEARTBEAT.md from the workspace: the tasks you were asked to "
    "keep an eye on. Check them now. If nothing needs the user's attention, answer exactly HEARTBEAT_OK and "
    "nothing else. Otherwise answer with a short message for the user.\n\n--- HEARTBEAT.md ---\n{tasks}"
)


def active_tasks(text: str) -> list[str]:
    """Return the lines of ``HEARTBEAT.md`` that are tasks still to watch."""
    tasks = []
    for line in _COMMENT.sub("", text).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or _DONE.match(stripped):
            continue
        tasks.append(stripped)
    return tasks


def read_tasks(workspace: Path, limit: int = 20_000) -> tuple[list[str], str]:
    """Return the active tasks and the text of ``HEARTBEAT.md`` (empty when there is none)."""
    path = workspace / HEARTBEAT_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:limit]
    except (FileNotFoundError, NotADirectoryError):
        return [], ""
    return active_tasks(text), text


def within(hours: str | None, tz: str, now: datetime) -> bool:
    """Return whether ``now`` falls inside ``HH:MM-HH:MM`` in zone ``tz`` (always, when ``hours`` is None)."""
    if not hours:
        return True
    local = now.astimezone(zone(tz))
    minute = local.hour * 60 + local.minute
    start_text, end_text = hours.split("-")
    start = int(start_text[:2]) * 60 + int(start_text[3:])
    end = int(end_text[:2]) * 60 + int(end_text[3:])
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # crosses midnight


def is_ok(answer: str) -> bool:
    """Return whether the agent's answer means "nothing to report"."""
    return answer.strip().strip("*`.").strip() == OK
