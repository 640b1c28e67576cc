"""``memo``: a small slice that keeps notes in its own SQLite database (migrations beside this file)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import Field
from refactorbot import AtomicSlice, Model, hookimpl, operation

REFACTORBOT_API = 1
MIGRATIONS = Path(__file__).parent / "memo_slice_migrations"


class NewNote(Model):
    text: str = Field(min_length=1, max_length=500, description="what to remember")


class Listing(Model):
    limit: int = Field(10, ge=1, le=100, description="newest notes to return")


class Note(Model):
    id: int
    text: str


class Memo(AtomicSlice):
    """Remembers short notes."""

    slice_id = "memo"

    @classmethod
    def migrations(cls) -> Any:
        """Return the migrations folder beside this module."""
        return MIGRATIONS

    @operation
    async def add(self, params: NewNote) -> Note:
        """Remember a note; return it with its id."""
        assert self.db is not None
        note_id = await self.db.execute(
            "INSERT INTO notes (text, created_at) VALUES (?, ?)", (params.text, time.time())
        )
        return Note(id=int(note_id), text=params.text)

    @operation
    async def recent(self, params: Listing) -> list[Note]:
        """Return the newest notes first."""
        assert self.db is not None
        rows = await self.db.fetchall("SELECT id, text FROM notes ORDER BY id DESC LIMIT ?", (params.limit,))
        return [Note(id=r["id"], text=r["text"]) for r in rows]


@hookimpl
def register_slices(register: Any) -> None:
    register(Memo)
