"""SQLite access for slices: one file each, tuned pragmas, numbered migrations, batched writes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import aiosqlite

from refactorbot.errors import MigrationError

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[\w-]+\.sql$")
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA temp_store=MEMORY",
)


def migration_files(source: Traversable | Path | None) -> list[tuple[int, str, Traversable | Path]]:
    """Return ``(number, name, file)`` for every ``NNNN_name.sql`` in ``source``, in order."""
    if source is None or not source.is_dir():
        return []
    found = []
    for entry in source.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry))
    found.sort(key=lambda item: item[0])
    numbers = [n for n, _, _ in found]
    if len(set(numbers)) != len(numbers):
        raise MigrationError(f"duplicate migration numbers in {source}")
    return found


class SliceDatabase:
    """One slice's SQLite file, opened with WAL and migrated on ``open``.

    The connection runs in autocommit mode: single statements commit at once, and
    ``async with db.transaction():`` groups several into one atomic unit.
    """

    def __init__(self, path: Path, migrations: Traversable | Path | None = None) -> None:
        self.path = Path(path)
        self.migrations = migrations
        self._conn: aiosqlite.Connection | None = None
        self._tx_lock = asyncio.Lock()
        self._writers: list[BatchWriter] = []

    @property
    def conn(self) -> aiosqlite.Connection:
        """Return the open connection or raise if ``open`` was not awaited."""
        if self._conn is None:
            raise RuntimeError(f"database {self.path} is not open")
        return self._conn

    @property
    def is_open(self) -> bool:
        """Return whether the connection is open."""
        return self._conn is not None

    async def open(self) -> None:
        """Open the file (creating its folder), set pragmas and apply pending migrations."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn.row_factory = aiosqlite.Row
        for pragma in PRAGMAS:
            await self._conn.execute(pragma)
        await self.migrate()

    async def close(self) -> None:
        """Flush batched writers, then close the connection."""
        for writer in list(self._writers):
            await writer.close()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def migrate(self) -> list[str]:
        """Apply migrations not yet recorded in ``schema_migrations``; return their names."""
        conn = self.conn
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at REAL NOT NULL)"
        )
        async with conn.execute("SELECT version FROM schema_migrations") as cur:
            done = {row[0] for row in await cur.fetchall()}
        applied = []
        for number, name, entry in migration_files(self.migrations):
            if number in done:
                continue
            script = entry.read_text(encoding="utf-8")
            async with self._tx_lock:
                try:
                    # executescript runs the whole file; BEGIN/COMMIT around it keeps it atomic.
                    await conn.executescript(
                        f"BEGIN;\n{script}\n;INSERT INTO schema_migrations VALUES"
                        f" ({number}, '{name}', {time.time()});\nCOMMIT;"
                    )
                except Exception as exc:
                    if conn.in_transaction:
                        await conn.rollback()
                    raise MigrationError(f"{self.path.name}: migration {name} failed: {exc}") from exc
            applied.append(name)
            log.info("%s: applied migration %s", self.path.name, name)
        return applied

    async def applied_migrations(self) -> list[int]:
        """Return the migration numbers recorded as applied."""
        return [r[0] for r in await self.fetchall("SELECT version FROM schema_migrations ORDER BY version")]

    # -- queries ---------------------------------------------------------------------------

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one statement (committed at once unless inside ``transaction``); return lastrowid."""
        async with self.conn.execute(sql, params) as cur:
            return cur.lastrowid or 0

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any] | dict[str, Any]]) -> None:
        """Run one statement for many rows, atomically."""
        async with self.transaction():
            await self.conn.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[aiosqlite.Row]:
        """Return every row of a query."""
        async with self.conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> aiosqlite.Row | None:
        """Return the first row of a query, or None."""
        async with self.conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        """Return the first column of the first row, or None."""
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Group statements into one transaction: committed on exit, rolled back on error."""
        async with self._tx_lock:
            conn = self.conn
            await conn.execute("BEGIN")
            try:
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            else:
                await conn.commit()

    async def integrity_check(self) -> str:
        """Return SQLite's ``PRAGMA integrity_check`` verdict (``"ok"`` when sound)."""
        return str(await self.scalar("PRAGMA integrity_check"))

    def batch_writer(self, sql: str, *, max_batch: int = 500, interval: float = 0.05) -> BatchWriter:
        """Return a ``BatchWriter`` that inserts rows with ``sql`` in grouped transactions."""
        writer = BatchWriter(self, sql, max_batch=max_batch, interval=interval)
        self._writers.append(writer)
        return writer


class BatchWriter:
    """Buffer rows and write them in one transaction per batch, off the caller's path.

    ``add`` never blocks on I/O. A background task wakes when rows arrive (no polling while
    idle), waits up to ``interval`` for more, and commits them together; ``flush`` and
    ``close`` write whatever is buffered.
    """

    def __init__(self, db: SliceDatabase, sql: str, *, max_batch: int = 500, interval: float = 0.05) -> None:
        self.db = db
        self.sql = sql
        self.max_batch = max_batch
        self.interval = interval
        self._rows: list[Sequence[Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.written = 0
        self.errors = 0

    def add(self, row: Sequence[Any]) -> None:
        """Queue one row for writing."""
        self._rows.append(row)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batch:{self.db.path.name}")
        if len(self._rows) == 1 or len(self._rows) >= self.max_batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Return how many rows wait to be written."""
        return len(self._rows)

    async def flush(self) -> int:
        """Write every buffered row now; return how many were written."""
        async with self._flush_lock:
            total = 0
            while self._rows:
                batch, self._rows = self._rows[: self.max_batch], self._rows[self.max_batch :]
                try:
                    async with self.db.transaction() as conn:
                        await conn.executemany(self.sql, batch)
                except asyncio.CancelledError:
                    self._rows[:0] = batch  # rolled back: keep the rows for the next flush
                    raise
                except Exception:
                    self.errors += len(batch)
                    log.exception("batch write to %s failed (%d rows)", self.db.path.name, len(batch))
                    continue
                total += len(batch)
            self.written += total
            return total

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if len(self._rows) < self.max_batch:
                await asyncio.sleep(self.interval)
            await self.flush()

    async def close(self) -> None:
        """Stop the background task and write what remains."""
        if self._task is not None:
            async with self._flush_lock:  # never cancel the task in the middle of a batch
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.db.is_open:
            await self.flush()
        if self in self.db._writers:
            self.db._writers.remove(self)
