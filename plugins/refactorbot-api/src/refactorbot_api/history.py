"""Read the unified log and the operation log from ``master.db`` (indexed, keyset-paged)."""

from __future__ import annotations

import time
from typing import Any

from refactorbot import SliceDatabase

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def parse_level(value: str | int | None) -> int | None:
    """Return a numeric level from a name (``warning``) or a number; raise ``ValueError`` otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    if text == "WARN":
        text = "WARNING"
    if text not in LEVELS:
        raise ValueError(f"unknown log level {value!r} (use one of {', '.join(LEVELS)} or a number)")
    return LEVELS[text]


async def read_logs(
    db: SliceDatabase,
    *,
    slice_id: str | None = None,
    min_level: int | None = None,
    since: float | None = None,
    until: float | None = None,
    before_id: int | None = None,
    limit: int = 100,
    contains: str | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Return up to ``limit`` log rows newest first, and the ``before_id`` of the next page.

    ``contains`` keeps rows whose message contains it (ASCII letters in any case).
    """
    where: list[str] = []
    params: list[Any] = []
    if before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    if slice_id is not None:
        where.append("slice_id = ?")
        params.append(slice_id)
    if min_level is not None:
        where.append("level >= ?")
        params.append(min_level)
    if since is not None:
        where.append("ts >= ?")
        params.append(since)
    if until is not None:
        where.append("ts < ?")
        params.append(until)
    if contains:
        where.append("instr(lower(message), ?) > 0")
        params.append(contains.lower())
    sql = "SELECT id, ts, level, level_name, slice_id, logger, message FROM logs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    rows = await db.fetchall(sql, (*params, limit + 1))
    items = [dict(r) for r in rows[:limit]]
    next_id = items[-1]["id"] if len(rows) > limit else None
    return items, next_id


async def operations_per_minute(
    db: SliceDatabase, *, minutes: int = 60, slice_id: str | None = None, now: float | None = None
) -> list[dict[str, Any]]:
    """Return operation counts, errors and latency per slice per minute over the last ``minutes``."""
    since = (now or time.time()) - minutes * 60
    sql = (
        "SELECT CAST(ts / 60 AS INTEGER) * 60 AS minute, slice_id, COUNT(*) AS count,"
        " SUM(1 - success) AS errors, AVG(duration_ms) AS mean_ms, MAX(duration_ms) AS max_ms"
        " FROM operation_log WHERE ts >= ?"
    )
    params: list[Any] = [since]
    if slice_id is not None:
        sql += " AND slice_id = ?"
        params.append(slice_id)
    sql += " GROUP BY minute, slice_id ORDER BY minute, slice_id"
    return [dict(r) for r in await db.fetchall(sql, params)]
