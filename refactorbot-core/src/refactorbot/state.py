"""The orchestrator's own records in ``master.db``: key/value state, slice states, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

from refactorbot.database import BatchWriter, SliceDatabase
from refactorbot.home import secure_home

SLICE_STATUSES = ("pending", "initializing", "running", "degraded", "failed", "stopped")


class GlobalState:
    """Key/value state, slice states and heartbeats, the operation log and unified logs.

    ``path`` is ``<home>/master.db``: opening it also makes the home private (``0700``, its
    files and databases ``0600``; see ``refactorbot.home.secure_home``).

    Operation-log and log rows are batched. An operation is logged before it is acknowledged
    outside the process: the API awaits ``refactorbot.database.committed()`` (a group commit)
    before it answers, and a stopping host flushes what is left.
    """

    def __init__(self, path: Path) -> None:
        self.db = SliceDatabase(path, files("refactorbot") / "state_migrations")
        self._ops: BatchWriter | None = None
        self._logs: BatchWriter | None = None

    async def open(self) -> None:
        """Make the home private, then open ``master.db`` and its batched writers."""
        secure_home(self.db.path.parent)
        await self.db.open()
        self._ops = self.db.batch_writer(
            "INSERT INTO operation_log (ts, request_id, slice_id, operation, caller, success,"
            " error_type, error_message, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._logs = self.db.batch_writer(
            "INSERT INTO logs (ts, level, level_name, slice_id, logger, message) VALUES (?, ?, ?, ?, ?, ?)"
        )

    async def close(self) -> None:
        """Flush pending rows and close the database."""
        await self.db.close()

    async def flush(self) -> None:
        """Write pending operation-log and log rows now."""
        for writer in (self._ops, self._logs):
            if writer is not None:
                await writer.flush()

    async def committed(self) -> None:
        """Return once every operation-log and log row queued so far is committed (group commit).

        Raise ``BatchWriteFailed`` when one of them could not be written.
        """
        for writer in (self._ops, self._logs):
            if writer is not None and writer.unsettled:
                await writer.committed()

    # -- key/value -------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the JSON value stored under ``key``."""
        raw = await self.db.scalar("SELECT value FROM kv WHERE key = ?", (key,))
        return default if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serializable) under ``key``."""
        await self.db.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, json.dumps(value), time.time()),
        )

    # -- slices ----------------------------------------------------------------------------

    async def set_slice(self, slice_id: str, status: str, **fields: Any) -> None:
        """Record a slice's status (and any of plugin, version, health, error, restarts)."""
        if status not in SLICE_STATUSES:
            raise ValueError(f"unknown slice status {status!r}")
        now = time.time()
        columns = {"status": status, "updated_at": now, **fields}
        if status == "running" and "started_at" not in fields:
            columns.setdefault("heartbeat_at", now)
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns)
        await self.db.execute(
            f"INSERT INTO slice_state (slice_id, {names}) VALUES (?, {marks})"
            f" ON CONFLICT(slice_id) DO UPDATE SET {updates}",
            (slice_id, *columns.values()),
        )

    async def heartbeat(self, slice_id: str, health: str) -> None:
        """Record that ``slice_id`` answered a health check."""
        now = time.time()
        await self.db.execute(
            "UPDATE slice_state SET heartbeat_at = ?, health = ?, updated_at = ? WHERE slice_id = ?",
            (now, health, now, slice_id),
        )

    async def slices(self) -> list[dict[str, Any]]:
        """Return every recorded slice state, sorted by id."""
        rows = await self.db.fetchall("SELECT * FROM slice_state ORDER BY slice_id")
        return [dict(r) for r in rows]

    # -- logs ------------------------------------------------------------------------------

    def log_operation(
        self,
        request_id: str,
        slice_id: str,
        operation: str,
        caller: str | None,
        success: bool,
        error_type: str | None,
        error_message: str | None,
        duration_ms: float,
    ) -> None:
        """Queue one operation-log row (written in the next batch)."""
        if self._ops is not None:
            self._ops.add(
                (
                    time.time(),
                    request_id,
                    slice_id,
                    operation,
                    caller,
                    int(success),
                    error_type,
                    error_message,
                    duration_ms,
                )
            )

    def log_record(self, record: logging.LogRecord, slice_id: str | None, message: str) -> None:
        """Queue one log row (``message`` includes the traceback, if any; capped at 8,000 characters)."""
        if self._logs is not None:
            self._logs.add((record.created, record.levelno, record.levelname, slice_id, record.name, message[:8000]))


class StateLogHandler(logging.Handler):
    """Send log records of ``refactorbot*`` loggers to ``master.db`` (the unified log).

    Records logged from other threads (work sent to ``asyncio.to_thread``) are handed to the
    event loop, which owns the batched writer.
    """

    def __init__(self, state: GlobalState, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.formatter_for_tracebacks = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record; the slice is read from ``record.slice_id`` or the logger name."""
        slice_id = getattr(record, "slice_id", None)
        if slice_id is None and record.name.startswith("refactorbot.slice."):
            slice_id = record.name.split(".")[2]
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatter_for_tracebacks.formatException(record.exc_info)}"
        if running is self.loop:
            self.state.log_record(record, slice_id, message)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.state.log_record, record, slice_id, message)
