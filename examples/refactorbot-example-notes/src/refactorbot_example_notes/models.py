"""The notes slice's configuration, operation parameters and results."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints
from refactorbot import Model, SliceConfig

TITLE_MAX = 200
BODY_MAX = 10_000
TAGS_MAX = 20
LIST_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"

#: A title: surrounding spaces dropped, then 1 to 200 characters.
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX)]


def _normalize_label(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


#: A tag: lowercase letters, digits, ``_`` and ``-``, up to 40 characters (case folded first).
Tag = Annotated[str, BeforeValidator(_normalize_label), StringConstraints(pattern=LIST_PATTERN)]
#: The name of a list of notes (``inbox``, ``groceries``, ...), same alphabet as tags.
ListName = Annotated[str, BeforeValidator(_normalize_label), StringConstraints(pattern=LIST_PATTERN)]


class NotesConfig(SliceConfig):
    """``[slices.notes]`` in ``refactorbot.toml`` (or ``RB_NOTES_<FIELD>``)."""

    max_notes: int = Field(1000, ge=1, le=1_000_000, description="notes kept at most; `add` refuses past it")
    default_list: ListName = Field("inbox", description="list a note goes to when `add` names none")


class Params(Model):
    """Base of every operation's parameters: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class AddNote(Params):
    """Parameters of ``notes.add``."""

    title: Title = Field(description="what the note is about (1-200 characters)")
    body: str = Field("", max_length=BODY_MAX, description="free text")
    tags: list[Tag] = Field(default_factory=list, max_length=TAGS_MAX, description="lowercase labels")
    list_name: ListName | None = Field(None, description="list to add to (default: the configured default_list)")


class ListNotes(Params):
    """Parameters of ``notes.list``: every filter is optional."""

    list_name: ListName | None = Field(None, description="only notes of this list")
    done: bool | None = Field(None, description="only completed (true) or open (false) notes")
    tag: Tag | None = Field(None, description="only notes carrying this tag")
    limit: int = Field(50, ge=1, le=500, description="notes returned at most, newest first")
    offset: int = Field(0, ge=0, description="notes skipped first, for paging")


class SearchNotes(Params):
    """Parameters of ``notes.search``."""

    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX)] = Field(
        description="text to find in titles and bodies (case-insensitive)"
    )
    limit: int = Field(20, ge=1, le=500, description="notes returned at most")


class NoteRef(Params):
    """Names one note by id."""

    id: int = Field(ge=1, description="the note's id")


class CompleteNote(NoteRef):
    """Parameters of ``notes.complete``."""

    done: bool = Field(True, description="false reopens a completed note")


class Note(Model):
    """One note as operations return it."""

    id: int
    list_name: str
    title: str
    body: str
    tags: list[str]
    done: bool
    created_at: datetime
    updated_at: datetime


class NoteList(Model):
    """A page of notes and how many match in all."""

    notes: list[Note]
    total: int


class Deleted(Model):
    """What ``notes.delete`` returns."""

    id: int
    deleted: bool
