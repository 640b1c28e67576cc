"""The ``getUpdates`` offset: the first update not yet handled, kept across restarts in a small file."""

from __future__ import annotations

import json
import os
from pathlib import Path


class OffsetStore:
    """Remember the polling offset of one bot in ``<state_dir>/offset.json`` (in memory when there is no directory).

    The file names the bot, so an offset is never used for another bot's token. Writes are atomic
    (a temporary file renamed over the old one), so a crash leaves the old offset or the new one.
    """

    def __init__(self, state_dir: Path | None, bot_id: int) -> None:
        self.path = state_dir / "offset.json" if state_dir is not None else None
        self.bot_id = bot_id
        self._offset: int | None = None

    def load(self) -> int | None:
        """Return the stored offset, or None (nothing stored, another bot's, or unreadable)."""
        if self.path is None or not self.path.exists():
            return self._offset
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        offset = data.get("offset") if isinstance(data, dict) else None
        if data.get("bot_id") != self.bot_id or not isinstance(offset, int) or isinstance(offset, bool):
            return None
        self._offset = offset
        return offset

    def save(self, offset: int) -> None:
        """Store ``offset`` (atomically, flushed to disk)."""
        self._offset = offset
        if self.path is None:
            return
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump({"bot_id": self.bot_id, "offset": offset}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
