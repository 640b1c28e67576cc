"""``NotesSlice``: notes and to-dos in the slice's own SQLite file."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from refactorbot import AtomicSlice, RefactorbotError, SliceDatabase, operation

from refactorbot_example_notes.models import (
    AddNote,
    CompleteNote,
    Deleted,
    ListNotes,
    Note,
    NoteList,
    NoteRef,
    NotesConfig,
    SearchNotes,
)


class NoteLimitReached(RefactorbotError):
    """Raise when ``add`` would keep more notes than ``max_notes`` allows."""


class NoteNotFound(RefactorbotError):
    """Raise when an operation names a note that does not exist."""


class NotesSlice(AtomicSlice):
    """Notes and to-dos: add, list, search, complete and delete."""

    slice_id = "notes"
    version = "0.1.0"
    Config = NotesConfig
    config: NotesConfig

    @property
    def database(self) -> SliceDatabase:
        """Return the open database (``initialize`` opened it)."""
        if self.db is None:
            raise RefactorbotError("the notes database is not open")
        return self.db

    @operation
    async def add(self, params: AddNote) -> Note:
        """Add a note to a list (the configured default list unless one is named)."""
        db = self.database
        now = time.time()
        list_name = params.list_name or self.config.default_list
        tags = json.dumps(sorted(set(params.tags)))
        async with db.transaction() as conn:
            # Count and insert in one transaction so two concurrent adds cannot both pass the limit.
            async with conn.execute("SELECT count(*) FROM notes") as cur:
                row = await cur.fetchone()
            held = row[0] if row else 0
            if held >= self.config.max_notes:
                raise NoteLimitReached(
                    f"note limit reached: {held} of max_notes = {self.config.max_notes}; "
                    "delete notes or raise [slices.notes] max_notes"
                )
            async with conn.execute(
                "INSERT INTO notes (list_name, title, body, tags, done, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 0, ?, ?)",
                (list_name, params.title, params.body, tags, now, now),
            ) as cur:
                note_id = cur.lastrowid
        note = await self._get(int(note_id or 0))
        await self.ctx.publish("notes.added", {"id": note.id, "list_name": note.list_name, "title": note.title})
        return note

    @operation(name="list")
    async def list_notes(self, params: ListNotes) -> NoteList:
        """List notes, newest first, filtered by list, completion and tag."""
        where, args = _filters(params)
        total = await self.database.scalar(f"SELECT count(*) FROM notes {where}", args)  # noqa: S608  fixed column names; values are ? parameters
        rows = await self.database.fetchall(
            f"SELECT * FROM notes {where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",  # noqa: S608  fixed column names; values are ? parameters
            [*args, params.limit, params.offset],
        )
        return NoteList(notes=[_note(r) for r in rows], total=int(total or 0))

    @operation
    async def search(self, params: SearchNotes) -> NoteList:
        """Find notes whose title or body contains the query, case-insensitively."""
        pattern = "%" + _escape_like(params.query) + "%"
        where = "WHERE title LIKE ? ESCAPE '\\' OR body LIKE ? ESCAPE '\\'"
        total = await self.database.scalar(f"SELECT count(*) FROM notes {where}", (pattern, pattern))  # noqa: S608  fixed column names; values are ? parameters
        rows = await self.database.fetchall(
            f"SELECT * FROM notes {where} ORDER BY created_at DESC, id DESC LIMIT ?",  # noqa: S608  fixed column names; values are ? parameters
            (pattern, pattern, params.limit),
        )
        return NoteList(notes=[_note(r) for r in rows], total=int(total or 0))

    @operation
    async def complete(self, params: CompleteNote) -> Note:
        """Mark a note done (or, with ``done: false``, open again)."""
        await self._get(params.id)
        await self.database.execute(
            "UPDATE notes SET done = ?, updated_at = ? WHERE id = ?", (int(params.done), time.time(), params.id)
        )
        note = await self._get(params.id)
        if note.done:
            await self.ctx.publish("notes.completed", {"id": note.id, "title": note.title})
        return note

    @operation
    async def delete(self, params: NoteRef) -> Deleted:
        """Delete a note for good."""
        await self._get(params.id)
        await self.database.execute("DELETE FROM notes WHERE id = ?", (params.id,))
        return Deleted(id=params.id, deleted=True)

    async def _get(self, note_id: int) -> Note:
        row = await self.database.fetchone("SELECT * FROM notes WHERE id = ?", (note_id,))
        if row is None:
            raise NoteNotFound(f"note {note_id} does not exist")
        return _note(row)


def _filters(params: ListNotes) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if params.list_name is not None:
        clauses.append("list_name = ?")
        args.append(params.list_name)
    if params.done is not None:
        clauses.append("done = ?")
        args.append(int(params.done))
    if params.tag is not None:
        clauses.append("EXISTS (SELECT 1 FROM json_each(notes.tags) WHERE json_each.value = ?)")
        args.append(params.tag)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _note(row: Any) -> Note:
    return Note(
        id=row["id"],
        list_name=row["list_name"],
        title=row["title"],
        body=row["body"],
        tags=json.loads(row["tags"]),
        done=bool(row["done"]),
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
        updated_at=datetime.fromtimestamp(row["updated_at"], UTC),
    )
