"""``SessionSlice``: conversations keyed by channel and chat, with token-budgeted history."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

import aiosqlite
from refactorbot import AtomicSlice, RefactorbotError, operation

from refactorbot_slice_session.models import (
    AppendParams,
    ArchiveIdleParams,
    ArchiveResult,
    BeginTurnParams,
    ExtendParams,
    GetOrCreateParams,
    History,
    HistoryParams,
    ListParams,
    Message,
    NewMessage,
    SearchParams,
    Session,
    SessionConfig,
    SessionIdParams,
    SessionMatch,
    SessionStats,
    StatsParams,
    TurnStart,
)
from refactorbot_slice_session.tokens import message_tokens

_SESSION_COLUMNS = (
    "id, channel, chat_id, user_id, status, title, metadata, created_at, updated_at,"
    " archived_at, message_count, token_count"
)


class SessionNotFound(RefactorbotError):
    """Raise when a session id is unknown."""


class SessionArchived(RefactorbotError):
    """Raise when appending to an archived session."""


def _session(row: aiosqlite.Row, created: bool = False) -> Session:
    return Session(
        session_id=row["id"],
        channel=row["channel"],
        chat_id=row["chat_id"],
        user_id=row["user_id"],
        status=row["status"],
        title=row["title"],
        metadata=json.loads(row["metadata"] or "{}"),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        archived_at=row["archived_at"],
        message_count=row["message_count"],
        token_count=row["token_count"],
        created=created,
    )


def chat_message(row: aiosqlite.Row) -> dict[str, Any]:
    """Return a stored message in OpenAI chat format."""
    message: dict[str, Any] = {"role": row["role"], "content": row["content"]}
    if row["tool_calls"]:
        message["tool_calls"] = json.loads(row["tool_calls"])
    if row["tool_call_id"]:
        message["tool_call_id"] = row["tool_call_id"]
    if row["name"]:
        message["name"] = row["name"]
    return message


def trim_to_budget(rows: list[tuple[dict[str, Any], int]], budget: int) -> tuple[list[dict[str, Any]], int, int]:
    """Keep the first system message and the newest messages that fit ``budget``.

    Returns ``(messages, tokens, dropped)``. A kept history never starts with ``tool``
    messages whose assistant turn was dropped: they would be orphans to the model.
    """
    system: list[tuple[dict[str, Any], int]] = []
    if rows and rows[0][0]["role"] == "system":
        system, rows = [rows[0]], rows[1:]
    used = sum(tokens for _, tokens in system)
    kept: list[tuple[dict[str, Any], int]] = []
    for message, tokens in reversed(rows):
        if used + tokens > budget:
            break
        kept.append((message, tokens))
        used += tokens
    kept.reverse()
    while kept and kept[0][0]["role"] == "tool":
        used -= kept.pop(0)[1]
    messages = [m for m, _ in system + kept]
    return messages, used, len(rows) - len(kept)


# -- work done on the database's thread, each call in one trip (SliceDatabase.run / atomic) ----------

_INSERT_MESSAGE = (
    "INSERT INTO messages (session_id, role, content, tool_calls, tool_call_id, name, tokens, duration_ms, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _new_session(params: GetOrCreateParams | BeginTurnParams) -> tuple[Any, ...]:
    """Return what a session created now is made of: channel, chat, user, title, metadata."""
    return (params.channel, params.chat_id, params.user_id, params.title, params.metadata)


def _find_or_create(
    conn: sqlite3.Connection, channel: str, chat_id: str, new: tuple[Any, ...]
) -> tuple[sqlite3.Row, bool]:
    """Return the chat's active session row and whether it was created now.

    Two callers racing for a new chat both end with the same session: the unique index on active
    ``(channel, chat_id)`` lets one insert win, the other reads it.
    """
    query = f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE channel = ? AND chat_id = ? AND status = 'active'"  # noqa: S608  constant names; values are ? parameters
    row = conn.execute(query, (channel, chat_id)).fetchone()
    if row is not None:
        return row, False
    now = time.time()
    channel, chat_id, user_id, title, metadata = new
    inserted = conn.execute(
        "INSERT INTO sessions (id, channel, chat_id, user_id, title, metadata, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (uuid.uuid4().hex, channel, chat_id, user_id, title, json.dumps(metadata), now, now),
    ).rowcount
    row = conn.execute(query, (channel, chat_id)).fetchone()
    return row, inserted == 1


def _insert_messages(conn: sqlite3.Connection, session_id: str, rows: list[tuple[Any, ...]], now: float) -> list[int]:
    ids = [
        conn.execute(_INSERT_MESSAGE, (session_id, *row, now)).lastrowid or 0  # role ... duration_ms
        for row in rows
    ]
    conn.execute(
        "UPDATE sessions SET message_count = message_count + ?, token_count = token_count + ?,"
        " updated_at = ? WHERE id = ?",
        (len(rows), sum(row[5] for row in rows), now, session_id),
    )
    return ids


def _active_status(conn: sqlite3.Connection, session_id: str) -> None:
    row = conn.execute("SELECT status FROM sessions WHERE id = ?", (session_id,)).fetchone()
    if row is None:
        raise SessionNotFound(f"no session '{session_id}'")
    if row[0] != "active":
        raise SessionArchived(f"session '{session_id}' is archived; get_or_create starts a new one")


def _add_messages(conn: sqlite3.Connection, session_id: str, rows: list[tuple[Any, ...]]) -> tuple[float, list[int]]:
    """Store messages (role, content, tool_calls JSON, tool_call_id, name, tokens, duration_ms) in an active session."""
    _active_status(conn, session_id)
    now = time.time()
    return now, _insert_messages(conn, session_id, rows, now)


def _begin_turn(
    conn: sqlite3.Connection,
    channel: str,
    chat_id: str,
    new: tuple[Any, ...],
    content: str,
    tokens: int,
    budget: int,
    limit: int,
) -> tuple[sqlite3.Row, bool, int, float, tuple[list[dict[str, Any]], int, int]]:
    row, created = _find_or_create(conn, channel, chat_id, new)
    session_id = row["id"]
    now = time.time()
    (message_id,) = _insert_messages(conn, session_id, [("user", content, None, None, None, tokens, None)], now)
    row = conn.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()  # noqa: S608  constant names; values are ? parameters
    return row, created, message_id, now, _read_history(conn, session_id, budget, limit, row["message_count"])


def _read_history_of(
    conn: sqlite3.Connection, session_id: str, budget: int, limit: int
) -> tuple[list[dict[str, Any]], int, int]:
    total = conn.execute("SELECT message_count FROM sessions WHERE id = ?", (session_id,)).fetchone()
    if total is None:
        raise SessionNotFound(f"no session '{session_id}'")
    return _read_history(conn, session_id, budget, limit, total[0])


def _read_history(
    conn: sqlite3.Connection, session_id: str, budget: int, limit: int, total: int
) -> tuple[list[dict[str, Any]], int, int]:
    """Return ``(messages, tokens, dropped)``: the newest messages within ``budget`` (see ``trim_to_budget``)."""
    columns = "id, role, content, tool_calls, tool_call_id, name, tokens"
    rows: list[sqlite3.Row] = []
    spent, before = 0, 2**62
    while len(rows) < limit and spent <= budget:  # pages of the newest, until the budget is certainly spent
        size = min(200, limit - len(rows))
        page = conn.execute(
            f"SELECT {columns} FROM messages WHERE session_id = ? AND id < ? ORDER BY id DESC LIMIT ?",  # noqa: S608  constant names; values are ? parameters
            (session_id, before, size),
        ).fetchall()
        rows.extend(page)
        spent += sum(r["tokens"] for r in page)
        if len(page) < size:
            break  # the session's first message was read
        before = page[-1]["id"]
    first = conn.execute(
        f"SELECT {columns} FROM messages WHERE session_id = ? ORDER BY id LIMIT 1",  # noqa: S608  constant names; values are ? parameters
        (session_id,),
    ).fetchone()
    ordered = [(chat_message(r), r["tokens"]) for r in reversed(rows)]
    if first is not None and first["role"] == "system" and (not rows or rows[-1]["id"] != first["id"]):
        ordered.insert(0, (chat_message(first), first["tokens"]))
    messages, tokens, dropped = trim_to_budget(ordered, budget)
    return messages, tokens, max(dropped, int(total or 0) - len(messages))


def _snippet(text: str, needle: str) -> str:
    """Return up to 160 characters of ``text`` around the first ``needle`` (ASCII case-insensitive)."""
    at = max(0, text.lower().find(needle) - 60)
    cut = text[at : at + 160]
    return ("…" if at else "") + cut + ("…" if at + 160 < len(text) else "")


def _search(conn: sqlite3.Connection, query: str, status: str | None, limit: int) -> list[SessionMatch]:
    """Find sessions by their own fields, then by their messages' text, newest activity first."""
    needle = query.lower()
    scope, args = (" AND status = ?", [status]) if status else ("", [])
    fields = " OR ".join(
        f"instr(lower(COALESCE({c}, '')), ?) > 0" for c in ("id", "title", "channel", "chat_id", "user_id")
    )
    rows = conn.execute(
        f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE ({fields}){scope} ORDER BY updated_at DESC LIMIT ?",  # noqa: S608  constant names; values are ? parameters
        (*[needle] * 5, *args, limit),
    ).fetchall()
    found = [SessionMatch(**_session(r).model_dump(), matched="session") for r in rows]
    seen = {m.session_id for m in found}
    if len(found) < limit:
        hits = conn.execute(
            f"SELECT m.session_id, m.content FROM messages m JOIN sessions s ON s.id = m.session_id"  # noqa: S608  constant names; values are ? parameters
            f" WHERE instr(lower(m.content), ?) > 0{scope.replace('status', 's.status')} ORDER BY m.id DESC LIMIT ?",
            (needle, *args, 20 * limit),
        ).fetchall()
        snippets: dict[str, str] = {}
        for session_id, content in hits:
            if session_id not in seen and session_id not in snippets:
                snippets[session_id] = _snippet(content, needle)
        ids = list(snippets)[: limit - len(found)]
        if ids:
            marks = ",".join("?" * len(ids))
            more = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id IN ({marks}) ORDER BY updated_at DESC",  # noqa: S608  constant names; values are ? parameters
                ids,
            ).fetchall()
            found += [
                SessionMatch(**_session(r).model_dump(), matched="message", snippet=snippets[r["id"]]) for r in more
            ]
    return found


class SessionSlice(AtomicSlice):
    """Conversations keyed by channel and chat: history with token counts, trimming, archival, analytics."""

    slice_id = "session"
    version = "0.1.0"
    Config = SessionConfig
    config: SessionConfig

    async def start(self) -> None:
        """Apply the archival rule once at start (``archive_on_start``)."""
        if self.config.archive_on_start:
            result = await self.archive_idle(ArchiveIdleParams())
            if result.archived:
                self.log.info("archived %d idle session(s)", result.archived)

    @property
    def _db(self) -> Any:
        assert self.db is not None, "session slice used before initialize"
        return self.db

    async def _get(self, session_id: str) -> aiosqlite.Row:
        row = await self._db.fetchone(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,))  # noqa: S608  constant names; values are ? parameters
        if row is None:
            raise SessionNotFound(f"no session '{session_id}'")
        found: aiosqlite.Row = row
        return found

    @operation
    async def get_or_create(self, params: GetOrCreateParams) -> Session:
        """Return the active session of a channel's chat, creating it when there is none."""
        query = f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE channel = ? AND chat_id = ? AND status = 'active'"  # noqa: S608  constant names; values are ? parameters
        row = await self._db.fetchone(query, (params.channel, params.chat_id))
        if row is not None:
            return _session(row)
        row, created = await self._db.atomic(_find_or_create, params.channel, params.chat_id, _new_session(params))
        if created:
            await self.ctx.publish("session.created", {"session_id": row["id"], "user_id": params.user_id})
        return _session(row, created=created)

    @operation
    async def get(self, params: SessionIdParams) -> Session:
        """Return one session by id."""
        return _session(await self._get(params.session_id))

    @operation
    async def append(self, params: AppendParams) -> Message:
        """Add a message to a session and publish ``session.message_added``."""
        item = NewMessage.model_validate(params.model_dump(exclude={"session_id"}))
        return (await self._add(params.session_id, [item]))[0]

    @operation
    async def extend(self, params: ExtendParams) -> list[Message]:
        """Add several messages at once (one transaction), e.g. a turn's tool calls, results and answer."""
        return await self._add(params.session_id, params.messages)

    @operation
    async def begin_turn(self, params: BeginTurnParams) -> TurnStart:
        """Start a chat turn in one call: ``get_or_create``, ``append`` of the user's message, then ``history``.

        One transaction: the chat's active session (created when there is none), the user's
        message stored in it, and the session's history with that message last, trimmed to the
        budget as ``history`` trims it. Publishes what those operations publish.
        """
        self._check_items([NewMessage(role="user", content=params.content)])
        budget = self.budget(params.max_tokens, params.model)
        tokens = message_tokens(params.content)
        row, created, message_id, now, history = await self._db.atomic(
            _begin_turn,
            params.channel,
            params.chat_id,
            _new_session(params),
            params.content,
            tokens,
            budget,
            params.limit or 10_000,
        )
        session_id = row["id"]
        if created:
            await self.ctx.publish("session.created", {"session_id": session_id, "user_id": params.user_id})
        await self.ctx.publish(
            "session.message_added",
            {"session_id": session_id, "message_id": message_id, "role": "user", "tokens": tokens},
        )
        messages, used, dropped = history
        return TurnStart(
            session=_session(row, created=created),
            message=Message(
                id=message_id, session_id=session_id, role="user", content=params.content, tokens=tokens, created_at=now
            ),
            history=History(session_id=session_id, messages=messages, tokens=used, budget=budget, dropped=dropped),
        )

    def _check_items(self, items: list[NewMessage]) -> None:
        for item in items:
            if len(item.content) > self.config.max_content_chars:
                raise RefactorbotError(
                    f"message has {len(item.content)} characters; the limit is {self.config.max_content_chars}"
                )
            if item.tool_calls and item.role != "assistant":
                raise RefactorbotError("only assistant messages carry tool_calls")

    async def _add(self, session_id: str, items: list[NewMessage]) -> list[Message]:
        self._check_items(items)
        rows = [
            (
                item.role,
                item.content,
                json.dumps(item.tool_calls) if item.tool_calls else None,
                item.tool_call_id,
                item.name,
                message_tokens(item.content, item.tool_calls),
                item.duration_ms,
            )
            for item in items
        ]
        now, ids = await self._db.atomic(_add_messages, session_id, rows)
        added = [
            Message(id=message_id, session_id=session_id, tokens=row[5], created_at=now, **item.model_dump())
            for item, row, message_id in zip(items, rows, ids, strict=True)
        ]
        for message in added:
            await self.ctx.publish(
                "session.message_added",
                {"session_id": session_id, "message_id": message.id, "role": message.role, "tokens": message.tokens},
            )
        return added

    def budget(self, max_tokens: int | None, model: str | None) -> int:
        """Return the history budget: explicit, else the model's context window minus the reserve."""
        if max_tokens is not None:
            return max_tokens
        window = self.config.context_windows.get(model or "", self.config.context_window)
        return max(1, window - self.config.reserve_tokens)

    @operation
    async def history(self, params: HistoryParams) -> History:
        """Return a session's messages, oldest first, trimmed to a token budget."""
        budget = self.budget(params.max_tokens, params.model)
        messages, tokens, dropped = await self._db.run(
            _read_history_of, params.session_id, budget, params.limit or 10_000
        )
        return History(session_id=params.session_id, messages=messages, tokens=tokens, budget=budget, dropped=dropped)

    @operation(name="list")
    async def list_sessions(self, params: ListParams) -> list[Session]:
        """Return sessions, most recently active first, filtered by user, channel or status."""
        where, args = [], []
        for column in ("user_id", "channel", "status"):
            value = getattr(params, column)
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._db.fetchall(
            f"SELECT {_SESSION_COLUMNS} FROM sessions{clause} ORDER BY updated_at DESC LIMIT ?",  # noqa: S608  constant names; values are ? parameters
            (*args, params.limit),
        )
        return [_session(r) for r in rows]

    @operation
    async def archive(self, params: SessionIdParams) -> Session:
        """Archive a session: it keeps its history, and its chat starts a new session next time."""
        await self._get(params.session_id)
        await self._db.execute(
            "UPDATE sessions SET status = 'archived', archived_at = ? WHERE id = ? AND status = 'active'",
            (time.time(), params.session_id),
        )
        await self.ctx.publish("session.archived", {"session_id": params.session_id})
        return _session(await self._get(params.session_id))

    @operation
    async def archive_idle(self, params: ArchiveIdleParams) -> ArchiveResult:
        """Archive every active session idle longer than ``idle_days`` (default from the config)."""
        days = params.idle_days if params.idle_days is not None else self.config.archive_after_days
        cutoff = time.time() - days * 86400
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT id FROM sessions WHERE status = 'active' AND updated_at < ?", (cutoff,)
            ) as cursor:
                ids = [r[0] for r in await cursor.fetchall()]
            await conn.execute(
                "UPDATE sessions SET status = 'archived', archived_at = ? WHERE status = 'active' AND updated_at < ?",
                (time.time(), cutoff),
            )
        for session_id in ids:
            await self.ctx.publish("session.archived", {"session_id": session_id})
        return ArchiveResult(archived=len(ids), session_ids=ids)

    @operation
    async def stats(self, params: StatsParams) -> SessionStats:
        """Return message counts, tokens and durations of one session or of all."""
        if params.session_id is not None:
            await self._get(params.session_id)
            scope, args = " WHERE session_id = ?", [params.session_id]
            sessions = await self._db.fetchall("SELECT status FROM sessions WHERE id = ?", args)
        else:
            scope, args = "", []
            sessions = await self._db.fetchall("SELECT status FROM sessions")
        by_role = {
            r["role"]: r["n"]
            for r in await self._db.fetchall(f"SELECT role, COUNT(*) AS n FROM messages{scope} GROUP BY role", args)  # noqa: S608  constant names; values are ? parameters
        }
        totals = await self._db.fetchone(
            f"SELECT COUNT(*) AS n, COALESCE(SUM(tokens), 0) AS t, AVG(CASE WHEN role = 'assistant'"  # noqa: S608  constant names; values are ? parameters
            f" THEN duration_ms END) AS r FROM messages{scope}",
            args,
        )
        span = await self._db.scalar(
            f"SELECT AVG(span) FROM (SELECT MAX(created_at) - MIN(created_at) AS span FROM messages{scope}"  # noqa: S608  constant names; values are ? parameters
            " GROUP BY session_id)",
            args,
        )
        active = sum(1 for r in sessions if r["status"] == "active")
        return SessionStats(
            sessions=len(sessions),
            active=active,
            archived=len(sessions) - active,
            messages=totals["n"],
            tokens=totals["t"],
            by_role=by_role,
            span_seconds=round(float(span or 0.0), 3),
            mean_response_ms=None if totals["r"] is None else round(totals["r"], 3),
        )

    @operation
    async def search(self, params: SearchParams) -> list[SessionMatch]:
        """Return sessions whose id, title, channel, chat or user contains ``query``, or one of whose messages does.

        Case-insensitive for ASCII letters; the most recently active first. A session matched by a
        message carries a snippet of its newest matching message.
        """
        found: list[SessionMatch] = await self._db.run(_search, params.query, params.status, params.limit)
        return found
