"""``MemorySlice``: per-user memories with FTS5 search, tags, consolidation and retention."""

from __future__ import annotations

import time
from typing import Any

import aiosqlite
from refactorbot import AtomicSlice, GatewayError, LLMCallRefused, RefactorbotError, SliceUnavailable, operation

from refactorbot_slice_memory.models import (
    ConsolidateParams,
    ConsolidateResult,
    FindParams,
    ForgetParams,
    ForgetResult,
    Memory,
    MemoryConfig,
    MemoryStats,
    PruneParams,
    PruneResult,
    RememberParams,
    SearchParams,
    SearchResult,
    StatsParams,
    UpdateParams,
    UsersParams,
    UserSummary,
)
from refactorbot_slice_memory.query import match_expression

_COLUMNS = (
    "m.id, m.user_id, m.session_id, m.content, m.kind, m.importance, m.access_count, m.last_accessed, m.created_at"
)
CONSOLIDATION_PROMPT = (
    "Summarise these memories about one user into a few short, factual sentences. Keep names, preferences,"
    " decisions and open tasks; drop repetition. Answer with the summary only."
)


def _memory(row: aiosqlite.Row, tags: list[str], score: float | None = None) -> Memory:
    return Memory(
        id=row["id"],
        user_id=row["user_id"],
        session_id=row["session_id"],
        content=row["content"],
        kind=row["kind"],
        importance=row["importance"],
        tags=tags,
        access_count=row["access_count"],
        last_accessed=row["last_accessed"],
        created_at=row["created_at"],
        score=score,
    )


class MemorySlice(AtomicSlice):
    """Long-term memory: per-user facts, full-text recall with bm25 ranking, consolidation, retention."""

    slice_id = "memory"
    version = "0.1.0"
    Config = MemoryConfig
    config: MemoryConfig

    @property
    def _db(self) -> Any:
        assert self.db is not None, "memory slice used before initialize"
        return self.db

    async def _tags_of(self, ids: list[int]) -> dict[int, list[str]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = await self._db.fetchall(
            f"SELECT memory_id, tag FROM memory_tags WHERE memory_id IN ({marks}) ORDER BY tag",  # noqa: S608  constant names; values are ? parameters
            ids,
        )
        found: dict[int, list[str]] = {i: [] for i in ids}
        for row in rows:
            found[row[0]].append(row[1])
        return found

    async def _load(self, memory_id: int) -> Memory:
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM memories m WHERE id = ?", (memory_id,))  # noqa: S608  constant names; values are ? parameters
        if row is None:
            raise RefactorbotError(f"no memory {memory_id}")
        return _memory(row, (await self._tags_of([memory_id]))[memory_id])

    # -- remember / forget -----------------------------------------------------------------

    @operation
    async def remember(self, params: RememberParams) -> Memory:
        """Store a memory for a user (an identical one is refreshed instead of duplicated)."""
        content = params.content.strip()
        if not content:
            raise RefactorbotError("memory content is empty")
        if len(content) > self.config.max_content_chars:
            raise RefactorbotError(
                f"memory has {len(content)} characters; the limit is {self.config.max_content_chars}"
            )
        now = time.time()
        existing = await self._db.scalar(
            "SELECT id FROM memories WHERE user_id = ? AND content = ?", (params.user_id, content)
        )
        async with self._db.transaction() as conn:
            if existing is not None:
                memory_id = existing
                await conn.execute(
                    "UPDATE memories SET importance = MAX(importance, ?) WHERE id = ?", (params.importance, memory_id)
                )
            else:
                cursor = await conn.execute(
                    "INSERT INTO memories (user_id, session_id, content, kind, importance, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (params.user_id, params.session_id, content, params.kind, params.importance, now),
                )
                memory_id = cursor.lastrowid
            await conn.executemany(
                "INSERT OR IGNORE INTO memory_tags (memory_id, tag) VALUES (?, ?)",
                [(memory_id, t) for t in params.tags],
            )
        if self.config.max_per_user is not None and existing is None:
            await self._enforce_cap(params.user_id, self.config.max_per_user)
        await self.ctx.publish("memory.remembered", {"user_id": params.user_id, "memory_id": memory_id})
        return await self._load(memory_id)

    async def _enforce_cap(self, user_id: str, cap: int) -> None:
        count = await self._db.scalar("SELECT COUNT(*) FROM memories WHERE user_id = ?", (user_id,))
        excess = int(count) - cap
        if excess > 0:
            await self._db.execute(
                "DELETE FROM memories WHERE id IN (SELECT id FROM memories WHERE user_id = ?"
                " ORDER BY access_count, importance, created_at LIMIT ?)",
                (user_id, excess),
            )

    @operation
    async def forget(self, params: ForgetParams) -> ForgetResult:
        """Delete one memory, a session's memories, or (``everything``) all of a user's."""
        where: list[str] = ["user_id = ?"]
        args: list[Any] = [params.user_id]
        if params.memory_id is not None:
            where.append("id = ?")
            args.append(params.memory_id)
        if params.session_id is not None:
            where.append("session_id = ?")
            args.append(params.session_id)
        if len(where) == 1 and not params.everything:
            raise RefactorbotError("name a memory_id or session_id, or set everything=true")
        async with self._db.transaction() as conn:
            cursor = await conn.execute(f"DELETE FROM memories WHERE {' AND '.join(where)}", args)  # noqa: S608  constant names; values are ? parameters
            forgotten = cursor.rowcount
        return ForgetResult(forgotten=forgotten)

    # -- search ----------------------------------------------------------------------------

    @operation
    async def search(self, params: SearchParams) -> SearchResult:
        """Return a user's memories ranked by bm25 relevance to ``query`` (newest first when empty)."""
        filters, args = ["m.user_id = ?"], [params.user_id]
        if params.session_id is not None:
            filters.append("m.session_id = ?")
            args.append(params.session_id)
        if not params.include_consolidated:
            filters.append("m.consolidated_into IS NULL")
        for tag in params.tags:
            filters.append("EXISTS (SELECT 1 FROM memory_tags t WHERE t.memory_id = m.id AND t.tag = ?)")
            args.append(tag)
        expression = match_expression(params.query, params.user_id)
        if expression is None:
            sql = f"SELECT {_COLUMNS}, NULL AS score FROM memories m WHERE {' AND '.join(filters)}"  # noqa: S608  constant names; values are ? parameters
            sql += " ORDER BY m.created_at DESC, m.id DESC LIMIT ?"
            rows = await self._db.fetchall(sql, [*args, params.limit])
        else:
            # bm25 ranks the newest `search_candidates` matches: FTS5 walks rowids newest first and stops,
            # so a user with a huge history still gets a bounded search.
            sql = (
                f"SELECT {_COLUMNS}, hits.score AS score FROM (SELECT rowid AS id, bm25(memories_fts, 1.0, 0.0) AS score"  # noqa: S608  constant names; values are ? parameters
                " FROM memories_fts WHERE memories_fts MATCH ? ORDER BY rowid DESC LIMIT ?) AS hits"
                f" JOIN memories m ON m.id = hits.id WHERE {' AND '.join(filters)} ORDER BY hits.score LIMIT ?"
            )
            rows = await self._db.fetchall(sql, [expression, self.config.search_candidates, *args, params.limit])
        ids = [r["id"] for r in rows]
        now = time.time()
        if params.touch and ids:
            marks = ",".join("?" * len(ids))
            await self._db.execute(
                f"UPDATE memories SET access_count = access_count + 1, last_accessed = ? WHERE id IN ({marks})",  # noqa: S608  constant names; values are ? parameters
                [now, *ids],
            )
        tags = await self._tags_of(ids)
        memories = []
        for row in rows:
            memory = _memory(row, tags[row["id"]], row["score"])
            if params.touch:
                memory.access_count += 1
                memory.last_accessed = now
            memories.append(memory)
        return SearchResult(memories=memories, query=expression or "")

    # -- consolidation and retention -------------------------------------------------------

    @operation
    async def consolidate(self, params: ConsolidateParams) -> ConsolidateResult:
        """Summarise a user's old memories through the LLM into one consolidated memory."""
        days = params.older_than_days if params.older_than_days is not None else self.config.consolidate_after_days
        cutoff = time.time() - days * 86400
        rows = await self._db.fetchall(
            "SELECT id, content FROM memories WHERE user_id = ? AND created_at <= ? AND consolidated_into IS NULL"
            " AND kind != 'summary' ORDER BY created_at LIMIT ?",
            (params.user_id, cutoff, params.max_memories),
        )
        if len(rows) < params.min_memories:
            return ConsolidateResult(
                consolidated=False, reason=f"{len(rows)} old memories; at least {params.min_memories} are needed"
            )
        listing = "\n".join(f"- {r['content']}" for r in rows)
        try:
            response = await self.ctx.complete(
                [{"role": "system", "content": CONSOLIDATION_PROMPT}, {"role": "user", "content": listing}],
                model=self.config.consolidation_model,
            )
        except (GatewayError, LLMCallRefused, SliceUnavailable) as exc:
            return ConsolidateResult(consolidated=False, reason=f"no summary: {exc}")
        summary_text = response.content.strip()
        if not summary_text:
            return ConsolidateResult(consolidated=False, reason="the model returned an empty summary")
        now = time.time()
        source_ids = [r["id"] for r in rows]
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO memories (user_id, content, kind, importance, created_at) VALUES (?, ?, 'summary', 0.8, ?)",
                (params.user_id, summary_text[: self.config.max_content_chars], now),
            )
            summary_id = cursor.lastrowid
            await conn.execute("INSERT INTO memory_tags (memory_id, tag) VALUES (?, 'consolidated')", (summary_id,))
            await conn.executemany(
                "INSERT INTO memory_consolidation (consolidated_id, source_id, source_content, created_at)"
                " VALUES (?, ?, ?, ?)",
                [(summary_id, r["id"], r["content"], now) for r in rows],
            )
            marks = ",".join("?" * len(source_ids))
            await conn.execute(
                f"UPDATE memories SET consolidated_into = ? WHERE id IN ({marks})",  # noqa: S608  constant names; values are ? parameters
                [summary_id, *source_ids],
            )
        await self.ctx.publish("memory.consolidated", {"user_id": params.user_id, "memory_id": summary_id})
        return ConsolidateResult(consolidated=True, summary=await self._load(summary_id or 0), source_ids=source_ids)

    @operation
    async def prune(self, params: PruneParams) -> PruneResult:
        """Delete memories older than the retention age and recalled at most ``max_access_count`` times."""
        days = params.older_than_days if params.older_than_days is not None else self.config.retention_days
        if days is None:
            raise RefactorbotError("no retention age: pass older_than_days or set [slices.memory] retention_days")
        where = ["created_at < ?", "access_count <= ?", "kind != 'summary'"]
        args: list[Any] = [time.time() - days * 86400, params.max_access_count]
        if params.user_id is not None:
            where.append("user_id = ?")
            args.append(params.user_id)
        async with self._db.transaction() as conn:
            cursor = await conn.execute(f"DELETE FROM memories WHERE {' AND '.join(where)}", args)  # noqa: S608  constant names; values are ? parameters
            pruned = cursor.rowcount
        return PruneResult(pruned=pruned)

    @operation
    async def stats(self, params: StatsParams) -> MemoryStats:
        """Return counts by kind, top tags, consolidation and access totals (of one user or all)."""
        scope, args = ("WHERE user_id = ?", (params.user_id,)) if params.user_id else ("", ())
        totals = await self._db.fetchone(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT user_id) AS users, COALESCE(SUM(access_count), 0) AS accesses,"  # noqa: S608  constant names; values are ? parameters
            " COUNT(consolidated_into) AS consolidated, SUM(kind = 'summary') AS summaries"
            f" FROM memories {scope}",
            args,
        )
        kinds = await self._db.fetchall(f"SELECT kind, COUNT(*) FROM memories {scope} GROUP BY kind", args)  # noqa: S608  constant names; values are ? parameters
        tag_scope = "JOIN memories m ON m.id = t.memory_id WHERE m.user_id = ?" if params.user_id else ""
        tags = await self._db.fetchall(
            f"SELECT tag, COUNT(*) AS n FROM memory_tags t {tag_scope} GROUP BY tag ORDER BY n DESC, tag LIMIT 10",  # noqa: S608  constant names; values are ? parameters
            args,
        )
        return MemoryStats(
            memories=totals["n"],
            users=totals["users"],
            by_kind={r[0]: r[1] for r in kinds},
            top_tags={r[0]: r[1] for r in tags},
            consolidated=totals["consolidated"],
            summaries=totals["summaries"] or 0,
            accesses=totals["accesses"],
        )

    # -- the operator's view (dashboard) -----------------------------------------------------

    @operation
    async def users(self, params: UsersParams) -> list[UserSummary]:
        """Return the users who have memories, with how many and when the newest was made, newest first."""
        where, args = "", []
        if params.query:
            where, args = " WHERE instr(lower(user_id), ?) > 0", [params.query.lower()]
        rows = await self._db.fetchall(
            "SELECT user_id, COUNT(*) AS n, MAX(created_at) AS last FROM memories"  # noqa: S608  constant names; values are ? parameters
            f"{where} GROUP BY user_id ORDER BY last DESC LIMIT ?",
            [*args, params.limit],
        )
        return [UserSummary(user_id=r["user_id"], memories=r["n"], last_created=r["last"]) for r in rows]

    @operation
    async def update(self, params: UpdateParams) -> Memory:
        """Change a memory's text, kind, importance or tags (tags given replace the old ones)."""
        changes: dict[str, Any] = {"kind": params.kind, "importance": params.importance}
        if params.content is not None:
            content = params.content.strip()
            if not content:
                raise RefactorbotError("memory content is empty")
            if len(content) > self.config.max_content_chars:
                raise RefactorbotError(
                    f"memory has {len(content)} characters; the limit is {self.config.max_content_chars}"
                )
            changes["content"] = content
        sets = {k: v for k, v in changes.items() if v is not None}
        if not sets and params.tags is None:
            raise RefactorbotError("nothing to change: give content, kind, importance or tags")
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT id FROM memories WHERE id = ? AND user_id = ?", (params.memory_id, params.user_id)
            ) as cursor:
                if await cursor.fetchone() is None:
                    raise RefactorbotError(f"no memory {params.memory_id} of user '{params.user_id}'")
            if sets:
                assignments = ", ".join(f"{column} = ?" for column in sets)
                await conn.execute(
                    f"UPDATE memories SET {assignments} WHERE id = ?",  # noqa: S608  constant names; values are ? parameters
                    [*sets.values(), params.memory_id],
                )
            if params.tags is not None:
                await conn.execute("DELETE FROM memory_tags WHERE memory_id = ?", (params.memory_id,))
                await conn.executemany(
                    "INSERT INTO memory_tags (memory_id, tag) VALUES (?, ?)",
                    [(params.memory_id, t) for t in params.tags],
                )
        await self.ctx.publish("memory.updated", {"user_id": params.user_id, "memory_id": params.memory_id})
        return await self._load(params.memory_id)

    @operation
    async def find(self, params: FindParams) -> SearchResult:
        """Search memories of every user (or one) for the operator: bm25-ranked, newest first without a query.

        Unlike ``search`` it does not count as a recall and includes consolidated memories.
        """
        filters, args = ["1 = 1"], []
        if params.user_id is not None:
            filters.append("m.user_id = ?")
            args.append(params.user_id)
        expression = match_expression(params.query, params.user_id or "")
        if expression is None:
            sql = f"SELECT {_COLUMNS}, NULL AS score FROM memories m WHERE {' AND '.join(filters)}"  # noqa: S608  constant names; values are ? parameters
            rows = await self._db.fetchall(
                sql + " ORDER BY m.created_at DESC, m.id DESC LIMIT ?", [*args, params.limit]
            )
        else:
            sql = (
                f"SELECT {_COLUMNS}, hits.score AS score FROM (SELECT rowid AS id, bm25(memories_fts, 1.0, 0.0) AS score"  # noqa: S608  constant names; values are ? parameters
                " FROM memories_fts WHERE memories_fts MATCH ? ORDER BY rowid DESC LIMIT ?) AS hits"
                f" JOIN memories m ON m.id = hits.id WHERE {' AND '.join(filters)} ORDER BY hits.score LIMIT ?"
            )
            rows = await self._db.fetchall(sql, [expression, self.config.search_candidates, *args, params.limit])
        tags = await self._tags_of([r["id"] for r in rows])
        return SearchResult(memories=[_memory(r, tags[r["id"]], r["score"]) for r in rows], query=expression or "")
