"""The orchestrator's own records in ``master.db``: slice states, the operation log, unified logs."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

from refactorbot.database import BatchWriter, SliceDatabase, current_flush
from refactorbot.home import secure_home

SLICE_STATUSES = ("pending", "initializing", "running", "degraded", "reloading", "failed", "stopped")


class GlobalState:
    """Slice states and heartbeats, the operation log and unified logs, in ``master.db``.

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

    # -- retention -------------------------------------------------------------------------

    async def prune(self, policy: Retention) -> dict[str, int]:
        """Delete log and operation-log rows past their age or row-count bound; return rows deleted per table.

        Batches of ``policy.batch`` rows, each its own short transaction, so requests and the
        batched writers interleave with a long prune; the newest rows are always the ones kept.
        """
        cutoffs = {
            "logs": (time.time() - policy.log_days * 86_400, policy.log_rows),
            "operation_log": (time.time() - policy.operation_days * 86_400, policy.operation_rows),
        }
        deleted: dict[str, int] = {}
        for table, (cutoff, max_rows) in cutoffs.items():
            count = await self._prune_batches(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE ts < ? ORDER BY id LIMIT ?)",  # noqa: S608  names from our own code; values are ? parameters
                cutoff,
                policy.batch,
            )
            newest = await self.db.scalar(f"SELECT max(id) FROM {table}")  # noqa: S608  names from our own code; values are ? parameters
            if newest is not None and newest > max_rows:  # ids grow: the newest max_rows ids stay
                count += await self._prune_batches(
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE id <= ? ORDER BY id LIMIT ?)",  # noqa: S608  names from our own code; values are ? parameters
                    newest - max_rows,
                    policy.batch,
                )
            deleted[table] = count
        return deleted

    async def _prune_batches(self, sql: str, bound: float, batch: int) -> int:
        total = 0
        while True:
            n = await self.db.atomic(_rows_deleted, sql, (bound, batch))
            total += n
            if n < batch:
                return total
            await asyncio.sleep(0)  # let waiting requests and writers in between batches

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
            f"INSERT INTO slice_state (slice_id, {names}) VALUES (?, {marks})"  # noqa: S608  names from our own code; values are ? parameters
            f" ON CONFLICT(slice_id) DO UPDATE SET {updates}",
            (slice_id, *columns.values()),
        )

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

    def writing_logs(self) -> bool:
        """Return whether the log rows' writer is flushing in this task (what it logs is not queued)."""
        return self._logs is not None and current_flush() is self._logs

    def log_record(self, record: logging.LogRecord, slice_id: str | None, message: str) -> None:
        """Queue one log row (``message`` includes the traceback, if any; capped at 8,000 characters)."""
        if self._logs is not None:
            self._logs.add((record.created, record.levelno, record.levelname, slice_id, record.name, message[:8000]))


class Retention(NamedTuple):
    """How long ``master.db`` keeps its rows (``[core] log_*``, ``operation_log_*``, ``retention_batch``)."""

    log_days: float
    log_rows: int
    operation_days: float
    operation_rows: int
    batch: int

    @classmethod
    def of(cls, core: Any) -> Retention:
        """Return the policy of ``[core]`` settings."""
        return cls(
            core.log_retention_days,
            core.log_max_rows,
            core.operation_log_retention_days,
            core.operation_log_max_rows,
            core.retention_batch,
        )


def _rows_deleted(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    return conn.execute(sql, params).rowcount


class StateLogHandler(logging.Handler):
    """Send log records of ``refactorbot*`` loggers to ``master.db`` (the unified log).

    Records logged from other threads (work sent to ``asyncio.to_thread``) are handed to the
    event loop, which owns the batched writer.

    What the unified log's own writer logs while it flushes (a failed write: a full disk, a lock
    held past ``busy_timeout``, a dropped table) is left to the other handlers (the console):
    queued here, it would go to the writer that just failed, fail again and be logged again.
    """

    def __init__(self, state: GlobalState, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.formatter_for_tracebacks = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record; the slice is read from ``record.slice_id`` or the logger name."""
        if self.state.writing_logs():
            return
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
