"""SQLite access for slices: one file each, tuned pragmas, numbered migrations, batched writes.

Database files are created ``0600`` (SQLite gives the ``-wal`` and ``-shm`` files the mode of the
database file), and each open database remembers which file it opened: a file deleted or replaced
under the connection is reported by ``file_problem``, and writes are refused from then on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import json
import logging
import math
import os
import re
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from refactorbot.errors import MigrationError, RefactorbotError
from refactorbot.home import create_private_file, make_private, private_dir

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Every batch writer of the process, for ``committed``.
_WRITERS: weakref.WeakSet[BatchWriter] = weakref.WeakSet()
#: Database files found deleted or replaced under an open connection, and why (reported at the next open).
_LOST: dict[Path, str] = {}
#: The batch writer whose flush runs in the current task (see ``current_flush``).
_FLUSHING: contextvars.ContextVar[BatchWriter | None] = contextvars.ContextVar("refactorbot_flushing", default=None)


def current_flush() -> BatchWriter | None:
    """Return the batch writer whose flush is running in this task, or None.

    A log handler that writes through a batch writer checks it to drop what that writer's own
    flush logs (a failed write), which would otherwise be queued behind it and fail again.
    """
    return _FLUSHING.get()


class DatabaseFileLost(RefactorbotError):
    """Raise on a write to a database whose file was deleted or replaced while it was open."""


class BatchWriteFailed(RefactorbotError):
    """Raise from ``BatchWriter.write`` / ``committed`` when a batch holding the awaited rows failed."""


_MIGRATION_NAME = re.compile(r"^(\d{4})_[\w-]+\.sql$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: Largest ``batch`` accepted by ``SliceDatabase.prune``.
MAX_PRUNE_BATCH = 100_000
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA temp_store=MEMORY",
)


def _execute_one(conn: sqlite3.Connection, sql: str, params: Any) -> int:
    cursor = conn.execute(sql, params)
    try:
        return cursor.lastrowid or 0
    finally:
        cursor.close()


def _execute_many(conn: sqlite3.Connection, sql: str, rows: list[Any]) -> None:
    conn.executemany(sql, rows).close()


def _fetch_all(conn: sqlite3.Connection, sql: str, params: Any) -> list[Any]:
    cursor = conn.execute(sql, params)
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


def _fetch_one(conn: sqlite3.Connection, sql: str, params: Any) -> Any:
    cursor = conn.execute(sql, params)
    try:
        return cursor.fetchone()
    finally:
        cursor.close()


def _delete_batch(
    conn: sqlite3.Connection,
    select: str,
    params: tuple[Any, ...],
    delete: str,
    before_delete: Callable[[sqlite3.Connection, list[int]], object] | None,
) -> int:
    """Delete one batch of rows chosen by ``select`` (their rowids, oldest first); return how many."""
    cursor = conn.execute(select, params)
    try:
        rowids = [row[0] for row in cursor.fetchall()]
    finally:
        cursor.close()
    if not rowids:
        return 0
    if before_delete is not None:
        before_delete(conn, rowids)
    conn.execute(delete, (json.dumps(rowids),)).close()
    return len(rowids)


def _prune_target(conn: sqlite3.Connection, table: str, column: str) -> str | None:
    """Return why ``table``/``column`` cannot be pruned (no such table or column, no rowid), or None."""
    cursor = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    try:
        found = cursor.fetchone() is not None
    finally:
        cursor.close()
    if not found:
        return f"no table {table!r}"
    cursor = conn.execute("SELECT name FROM pragma_table_info(?)", (table,))
    try:
        columns = {row[0] for row in cursor.fetchall()}
    finally:
        cursor.close()
    if column not in columns:
        return f"table {table!r} has no column {column!r}"
    try:
        conn.execute(f'SELECT rowid FROM "{table}" LIMIT 0').close()  # noqa: S608  table checked against sqlite_master above
    except sqlite3.OperationalError:
        return f"table {table!r} is WITHOUT ROWID"
    return None


class _FileChanged(Exception):
    """The database file is no longer the one opened (seen on the database thread, before a commit)."""


def _same_file(path: Path, identity: tuple[int, int] | None) -> bool:
    if identity is None:
        return True
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == identity


def _in_transaction(
    conn: sqlite3.Connection,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    path: Path,
    identity: tuple[int, int] | None,
) -> T:
    """Run ``fn(conn, *args)`` between BEGIN and COMMIT (on the database thread); roll back if it raises.

    Nothing is committed to a file deleted or replaced since it was opened (``_FileChanged``).
    """
    conn.execute("BEGIN").close()
    try:
        result = fn(conn, *args)
        if not _same_file(path, identity):
            raise _FileChanged
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    conn.commit()
    return result


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
        self._identity: tuple[int, int] | None = None
        self._lost: str | None = None

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
        """Open the file (creating it ``0600`` and its folder ``0700``), set pragmas, apply migrations."""
        if not self.path.parent.is_dir():
            private_dir(self.path.parent)
        tightened = [create_private_file(self.path)]
        lost_before = _LOST.pop(self.path, None)
        if lost_before is not None:
            log.error("%s: opening a fresh, empty database: %s", self.path, lost_before)
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn.row_factory = aiosqlite.Row
        for pragma in PRAGMAS:
            await self._conn.execute(pragma)
        info = os.stat(self.path)
        self._identity, self._lost = (info.st_dev, info.st_ino), None
        # SQLite creates -wal and -shm with the database file's mode; ones left by an older
        # version (or a crash) may be looser.
        tightened += [make_private(Path(f"{self.path}{suffix}")) for suffix in ("-wal", "-shm")]
        if any(tightened):
            log.warning(
                "%s: removed group and other permissions: %s", self.path.name, "; ".join(filter(None, tightened))
            )
        await self.migrate()

    async def close(self) -> None:
        """Flush batched writers, then close the connection.

        When the file was deleted or replaced while open, what the connection still holds is
        saved next to it (``<name>.lost-<time>``, mode ``0600``) and the loss is logged as an error.
        """
        for writer in list(self._writers):
            await writer.close()
        if self._conn is not None:
            problem = self.file_problem()
            conn, self._conn = self._conn, None
            if problem is not None:
                await self._save_lost(conn, problem)
            await conn.close()
            self._identity = None

    # -- the file under the connection -----------------------------------------------------

    def file_problem(self) -> str | None:
        """Return why the file at ``path`` is no longer the one opened (deleted, replaced), or None.

        Costs one ``os.stat``. The first finding is logged as an error and sticks: every later
        write raises ``DatabaseFileLost``, ``health_check`` reports the slice unhealthy, and the
        next ``open`` of the path logs that it starts from an empty database.
        """
        if self._lost is not None:
            return self._lost
        if self._identity is None:
            return None
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            problem = f"database file {self.path} was deleted while open"
        except OSError as exc:
            problem = f"database file {self.path} cannot be checked: {exc.strerror or exc}"
        else:
            if (info.st_dev, info.st_ino) == self._identity:
                return None
            problem = f"database file {self.path} was replaced while open"
        self._lost = problem
        _LOST[self.path] = f"{problem}; its rows are not in the new file"
        log.error("%s; refusing further writes (they would go to a file nobody will read again)", problem)
        return problem

    def _check_file(self) -> None:
        problem = self.file_problem()
        if problem is not None:
            raise DatabaseFileLost(f"{problem}; write refused")

    async def _save_lost(self, conn: aiosqlite.Connection, problem: str) -> None:
        target = self.path.with_name(f"{self.path.name}.lost-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            create_private_file(target)
            copy = sqlite3.connect(target, check_same_thread=False)
            try:
                await conn.backup(copy)
            finally:
                copy.close()
        except Exception as exc:  # the folder may be gone too: the loss is still reported
            log.error("%s; its contents could not be saved: %s: %s", problem, type(exc).__name__, exc)
            return
        log.error("%s; what the connection still held is saved in %s", problem, target)

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
                        f"BEGIN;\n{script}\n;INSERT INTO schema_migrations VALUES"  # noqa: S608  the script is the slice's own migration file; name matches ^\d{4}_[\w-]+\.sql$
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
    # Each query is one trip to the connection's thread: the statement, its rows and closing its
    # cursor run there together (aiosqlite's cursor API costs a trip for each of those steps).

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run ``fn(connection, *args)`` on the database's thread, in one trip; return its result.

        ``connection`` is the ``sqlite3.Connection`` (rows are ``sqlite3.Row``). ``fn`` must not
        block on anything but SQLite. Statements run in autocommit mode unless ``fn`` is given to
        ``atomic`` or runs inside ``transaction``. Nothing checks the file first: use ``atomic`` or
        ``execute`` for writes.
        """
        conn = self.conn
        return await conn._execute(fn, conn._conn, *args)  # type: ignore[no-untyped-call,no-any-return]

    async def atomic(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run ``fn(connection, *args)`` as one transaction on the database's thread, in one trip.

        Committed when ``fn`` returns, rolled back when it raises (the exception is raised here).
        Like ``transaction`` it waits for other transactions of this database and refuses to
        write (``DatabaseFileLost``) once the file was deleted or replaced while open.
        """
        async with self._tx_lock:
            if self._lost is not None:
                self._check_file()
            try:
                return await self.run(_in_transaction, fn, args, self.path, self._identity)
            except _FileChanged:
                self._check_file()  # records the loss (logged once) and raises DatabaseFileLost
                raise DatabaseFileLost(f"database file {self.path} could not be checked; write refused") from None

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one statement (committed at once unless inside ``transaction``); return lastrowid.

        Raise ``DatabaseFileLost`` when the file was deleted or replaced while open.
        """
        self._check_file()
        return await self.run(_execute_one, sql, params)

    async def execute_alone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        """Run one statement as its own transaction, never inside another caller's ``transaction``."""
        async with self._tx_lock:
            self._check_file()
            await self.run(_execute_one, sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any] | dict[str, Any]]) -> None:
        """Run one statement for many rows, atomically."""
        await self.atomic(_execute_many, sql, list(rows))

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[aiosqlite.Row]:
        """Return every row of a query."""
        return await self.run(_fetch_all, sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> aiosqlite.Row | None:
        """Return the first row of a query, or None."""
        return await self.run(_fetch_one, sql, params)

    async def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        """Return the first column of the first row, or None."""
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Group statements into one transaction: committed on exit, rolled back on error.

        Rolled back with ``DatabaseFileLost`` when the file was deleted or replaced while open.
        """
        async with self._tx_lock:
            conn = self.conn
            try:
                # Inside the try: a cancel while BEGIN is queued still lets it run on the database
                # thread, and the rollback queued after it ends that transaction.
                await conn.execute("BEGIN")
                yield conn
                self._check_file()
            except BaseException:
                await asyncio.shield(conn.rollback())  # a no-op when BEGIN itself failed
                raise
            else:
                await conn.commit()

    async def integrity_check(self) -> str:
        """Return SQLite's ``PRAGMA integrity_check`` verdict (``"ok"`` when sound)."""
        return str(await self.scalar("PRAGMA integrity_check"))

    async def prune(
        self,
        table: str,
        time_column: str,
        *,
        max_age_seconds: float | None = None,
        max_rows: int | None = None,
        batch: int = 5000,
        where: str | None = None,
        where_params: Sequence[Any] = (),
        before_delete: Callable[[sqlite3.Connection, list[int]], object] | None = None,
        now: float | None = None,
    ) -> int:
        """Delete the oldest rows of ``table`` past an age or a row-count bound; return how many went.

        ``time_column`` holds each row's Unix time; rows are ordered by it, then by ``rowid``, and
        the newest are the ones kept. ``max_age_seconds``: rows older than that go (``None``: no
        age bound). ``max_rows``: the newest ``max_rows`` rows stay (``None``: no count bound).
        Rows go in batches of ``batch``, each its own short transaction (``atomic``), with the
        event loop free between them: requests and batched writers of this database interleave
        with a long prune.

        ``where`` (SQL text from the slice's code, with ``?`` placeholders bound from
        ``where_params``; never built from input) limits deletion to the rows that meet it: rows
        that do not are never deleted, and still count toward ``max_rows``.
        ``before_delete(conn, rowids)`` runs on the database's thread in each batch's transaction
        before its rows go (e.g. to fold them into an aggregate table): if it raises, that batch
        is rolled back and the exception is raised here.

        ``table`` and ``time_column`` must be plain identifiers naming an existing table with a
        rowid and its column. Raise ``ValueError`` (one line) for a bad argument.
        """
        for label, name in (("table", table), ("time_column", time_column)):
            if not isinstance(name, str) or not _IDENTIFIER.match(name):
                raise ValueError(f"prune: {label} {str(name)[:80]!r} is not a plain SQL identifier")
        if max_age_seconds is not None and (
            isinstance(max_age_seconds, bool)
            or not isinstance(max_age_seconds, int | float)
            or not math.isfinite(max_age_seconds)
            or max_age_seconds < 0
        ):
            raise ValueError(f"prune: max_age_seconds must be a finite number >= 0, not {max_age_seconds!r}")
        if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0):
            raise ValueError(f"prune: max_rows must be an integer >= 0, not {max_rows!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_PRUNE_BATCH:
            raise ValueError(f"prune: batch must be an integer from 1 to {MAX_PRUNE_BATCH}, not {batch!r}")
        if where is not None and (not where.strip() or ";" in where):
            raise ValueError("prune: where must be one non-empty SQL condition")
        problem = await self.run(_prune_target, table, time_column)
        if problem is not None:
            raise ValueError(f"prune: {problem} in {self.path.name}")
        extra = f" AND ({where})" if where is not None else ""
        order = f'ORDER BY "{time_column}", rowid'
        delete = f'DELETE FROM "{table}" WHERE rowid IN (SELECT value FROM json_each(?))'  # noqa: S608  identifiers checked against the schema
        deleted = 0
        if max_age_seconds is not None:
            cutoff = (time.time() if now is None else now) - max_age_seconds
            select = f'SELECT rowid FROM "{table}" WHERE "{time_column}" < ?{extra} {order} LIMIT ?'  # noqa: S608  identifiers checked against the schema; values bound
            deleted += await self._prune_batches(select, (cutoff, *where_params), delete, batch, before_delete)
        if max_rows is not None:
            span = await self.scalar(f'SELECT max(rowid) - min(rowid) + 1 FROM "{table}"')  # noqa: S608  identifiers checked against the schema
            if span is not None and span > max_rows:  # rowids are unique: span bounds the row count
                cut = await self.fetchone(
                    f'SELECT "{time_column}", rowid FROM "{table}"'  # noqa: S608  identifiers checked against the schema
                    f' ORDER BY "{time_column}" DESC, rowid DESC LIMIT 1 OFFSET ?',
                    (max_rows,),
                )
                if cut is not None:  # the newest row past the bound: it and every older row go
                    select = (
                        f'SELECT rowid FROM "{table}" WHERE ("{time_column}" IS NULL OR "{time_column}" < ?'  # noqa: S608  identifiers checked against the schema; values bound
                        f' OR ("{time_column}" = ? AND rowid <= ?)){extra} {order} LIMIT ?'
                    )
                    params = (cut[0], cut[0], cut[1], *where_params)
                    if cut[0] is None:  # the cut falls among rows without a time: those up to its rowid
                        select = (
                            f'SELECT rowid FROM "{table}" WHERE "{time_column}" IS NULL AND rowid <= ?{extra}'  # noqa: S608  identifiers checked against the schema; values bound
                            f" {order} LIMIT ?"
                        )
                        params = (cut[1], *where_params)
                    deleted += await self._prune_batches(select, params, delete, batch, before_delete)
        return deleted

    async def _prune_batches(
        self,
        select: str,
        params: tuple[Any, ...],
        delete: str,
        batch: int,
        before_delete: Callable[[sqlite3.Connection, list[int]], object] | None,
    ) -> int:
        total = 0
        while True:
            n = await self.atomic(_delete_batch, select, (*params, batch), delete, before_delete)
            total += n
            if n < batch:
                return total
            await asyncio.sleep(0)  # let waiting requests and writers in between batches

    def batch_writer(self, sql: str, *, max_batch: int = 500, interval: float = 0.05) -> BatchWriter:
        """Return a ``BatchWriter`` that inserts rows with ``sql`` in grouped transactions."""
        writer = BatchWriter(self, sql, max_batch=max_batch, interval=interval)
        self._writers.append(writer)
        return writer


class Pruner:
    """Runs a slice's retention pass off the request path: once at ``start()``, then every ``interval`` seconds.

    ``prune`` is one pass (typically ``SliceDatabase.prune`` on a growing table) and returns how
    many rows it deleted; ``what`` names them in the log line (``retention: deleted 12 tool
    executions``). Passes never overlap: the periodic one and one asked for now (``run()``, e.g.
    from a ``<slice>.prune`` operation) share a lock. A failed periodic pass is logged with its
    traceback and retried at the next interval; ``run()`` raises its failure to the caller.
    """

    def __init__(
        self, prune: Callable[[], Awaitable[int]], *, interval: float, logger: logging.Logger, what: str
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
            raise ValueError(f"Pruner: interval must be a positive number of seconds, not {interval!r}")
        self._prune = prune
        self.interval = float(interval)
        self.log = logger
        self.what = what
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._first_pass = asyncio.Event()

    def start(self) -> None:
        """Start the periodic passes (the first at once); a second call does nothing."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._periodic(), name=f"retention of {self.what}")

    async def stop(self) -> None:
        """Cancel the periodic passes and wait for the one under way, if any, to unwind."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> int:
        """Run one pass now and return how many rows it deleted.

        It runs after the pass under way, if any, and once started after the first periodic pass:
        rows written after ``run()`` was asked for are never pruned by a start pass that ran late.
        """
        if self._task is not None:
            await self._first_pass.wait()
        return await self._pass()

    async def _pass(self) -> int:
        async with self._lock:
            deleted = await self._prune()
        if deleted:
            self.log.info("retention: deleted %d %s", deleted, self.what)
        return deleted

    async def _periodic(self) -> None:
        while True:
            try:
                await self._pass()
            except Exception:  # retention retries next time; the table keeps being written
                self.log.exception("pruning %s failed", self.what)
            finally:
                self._first_pass.set()
            await asyncio.sleep(self.interval)


class BatchWriter:
    """Buffer rows and write them in one transaction per batch, off the caller's path.

    ``add`` never blocks on I/O. A background task wakes when rows arrive (no polling while
    idle), waits up to ``interval`` for more, and commits them together; ``flush`` and
    ``close`` write whatever is buffered.

    ``await write(row)`` returns once the row is committed (group commit: rows that arrive
    while a batch commits go together in the next one, without waiting for ``interval``), and
    ``await committed()`` waits for every row added so far; both raise ``BatchWriteFailed``
    when the batch holding their rows failed.
    """

    def __init__(self, db: SliceDatabase, sql: str, *, max_batch: int = 500, interval: float = 0.05) -> None:
        self.db = db
        self.sql = sql
        self.max_batch = max_batch
        self.interval = interval
        self._rows: list[Sequence[Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_lock = asyncio.Lock()
        #: Rows added so far (the last row's sequence number) and rows whose batch finished.
        self._added = 0
        self._settled = 0
        #: ``(first, last, reason)`` sequence ranges of recent failed batches.
        self._failures: collections.deque[tuple[int, int, str]] = collections.deque(maxlen=64)
        self.written = 0
        self.errors = 0
        self.batches = 0
        _WRITERS.add(self)

    def add(self, row: Sequence[Any]) -> int:
        """Queue one row for writing; return its sequence number (for ``committed``)."""
        self._rows.append(row)
        self._added += 1
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._run(), name=f"batch:{self.db.path.name}")
        if len(self._rows) == 1 or len(self._rows) >= self.max_batch:
            self._wake.set()
        return self._added

    async def write(self, row: Sequence[Any]) -> None:
        """Queue one row and return once it is committed; raise ``BatchWriteFailed`` if it was not."""
        seq = self.add(row)
        await self.committed(seq, since=seq - 1)

    @property
    def pending(self) -> int:
        """Return how many rows wait to be written."""
        return len(self._rows)

    @property
    def unsettled(self) -> bool:
        """Return whether some added row has not been committed (or failed) yet."""
        return self._settled < self._added

    async def committed(self, upto: int | None = None, *, since: int | None = None) -> None:
        """Return once rows up to sequence ``upto`` (default: every row added so far) are committed.

        Raise ``BatchWriteFailed`` when a batch holding one of the rows after ``since`` (default:
        the rows not yet committed when called) failed.
        """
        target = self._added if upto is None else upto
        first = (self._settled if since is None else since) + 1
        while self._settled < target:
            async with self._flush_lock:
                if self._settled < target:
                    await self._flush_locked()
                    if self._settled < target and not self._rows:  # never spin on rows no flush holds
                        reason = f"{target - self._settled} rows were lost before they were written"
                        self._failures.append((self._settled + 1, target, reason))
                        log.error("batch writer of %s: %s", self.db.path.name, reason)
                        self._settled = target
        for low, high, reason in self._failures:
            if low <= target and high >= first:
                raise BatchWriteFailed(f"{self.db.path.name}: {reason}")

    async def flush(self) -> int:
        """Write the rows buffered when called; return how many were written."""
        async with self._flush_lock:
            return await self._flush_locked()

    async def _flush_locked(self) -> int:
        """Write the rows buffered now (a snapshot); rows added meanwhile wait for the next flush.

        The snapshot bounds the time the flush lock is held, however fast rows keep coming
        (``close`` waits for that lock), and what the flush itself logs (a failed batch) is
        never written by the same flush.
        """
        total = 0
        snapshot, self._rows = self._rows, []
        token = _FLUSHING.set(self)
        try:
            for start in range(0, len(snapshot), self.max_batch):
                batch = snapshot[start : start + self.max_batch]
                # One transaction in one trip to the database thread. Once sent it runs to its end
                # there: a flush cancelled meanwhile waits for it, so its rows count once, as what
                # became of them, and only the batches not sent yet are kept for the next flush.
                work = asyncio.ensure_future(self.db.atomic(_execute_many, self.sql, batch))
                cancelled = False
                while not work.done():
                    try:
                        await asyncio.shield(work)
                    except asyncio.CancelledError:
                        if not cancelled:
                            self._rows[:0] = snapshot[start + len(batch) :]
                            if self._rows:
                                self._wake.set()  # rows put back: the background task writes them
                        cancelled = True
                    except Exception:  # noqa: S110  not swallowed: work.exception() is recorded just below
                        pass
                failure: BaseException | None = (
                    RuntimeError("the write was cancelled on the database thread")
                    if work.cancelled()
                    else work.exception()
                )
                if failure is None:
                    self._settled += len(batch)
                    self.batches += 1
                    total += len(batch)
                else:
                    self.errors += len(batch)
                    self._failures.append(
                        (self._settled + 1, self._settled + len(batch), f"{len(batch)} rows not written: {failure}")
                    )
                    self._settled += len(batch)
                    log.error("batch write to %s failed (%d rows)", self.db.path.name, len(batch), exc_info=failure)
                if cancelled:
                    self.written += total
                    raise asyncio.CancelledError
        finally:
            _FLUSHING.reset(token)
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
        for _ in range(3):  # rows added while the last flush ran (bounded: a flush may log)
            if not self.db.is_open or not self._rows:
                break
            await self.flush()
        if self in self.db._writers:
            self.db._writers.remove(self)
        _WRITERS.discard(self)


async def committed() -> None:
    """Return once every row added so far to any batch writer of this event loop is committed.

    The acknowledgement barrier: the API awaits it before it answers, so an answered operation
    has its ``operation_log`` row (and every other batched row it caused) on disk. Costs nothing
    when no row is waiting; otherwise one group commit per database. Raise ``BatchWriteFailed``
    when one of those rows could not be written.
    """
    loop = asyncio.get_running_loop()
    waiting = [writer for writer in list(_WRITERS) if writer.unsettled and writer._loop is loop]
    if not waiting:
        return
    results = await asyncio.gather(*(writer.committed() for writer in waiting), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
