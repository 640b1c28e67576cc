import asyncio
import os
import sqlite3
import stat

import pytest
from refactorbot.database import BatchWriteFailed, DatabaseFileLost, SliceDatabase, committed
from refactorbot.errors import MigrationError


def write_migrations(folder, *scripts):
    folder.mkdir(exist_ok=True)
    for i, script in enumerate(scripts, 1):
        (folder / f"{i:04d}_step{i}.sql").write_text(script)
    return folder


@pytest.mark.asyncio
async def test_migrations_apply_once_in_order(tmp_path):
    migrations = write_migrations(
        tmp_path / "m",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);",
        "ALTER TABLE t ADD COLUMN w INTEGER; CREATE INDEX t_w ON t(w);",
    )
    db = SliceDatabase(tmp_path / "s.db", migrations)
    await db.open()
    assert await db.applied_migrations() == [1, 2]
    assert await db.migrate() == []
    assert await db.scalar("PRAGMA journal_mode") == "wal"
    assert await db.scalar("PRAGMA foreign_keys") == 1
    assert await db.scalar("PRAGMA busy_timeout") == 5000
    await db.close()
    db = SliceDatabase(tmp_path / "s.db", migrations)
    await db.open()
    assert await db.applied_migrations() == [1, 2]
    await db.close()


@pytest.mark.asyncio
async def test_failed_migration_leaves_nothing_half_applied(tmp_path):
    migrations = write_migrations(
        tmp_path / "m",
        "CREATE TABLE a (id INTEGER);",
        "CREATE TABLE b (id INTEGER); INSERT INTO nowhere VALUES (1);",
    )
    db = SliceDatabase(tmp_path / "s.db", migrations)
    with pytest.raises(MigrationError, match="0002_step2.sql failed: no such table: nowhere"):
        await db.open()
    await db.close()
    con = sqlite3.connect(tmp_path / "s.db")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "a" in tables and "b" not in tables
    assert con.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]


@pytest.mark.asyncio
async def test_duplicate_migration_numbers_are_refused(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_a.sql").write_text("SELECT 1;")
    (folder / "0001_b.sql").write_text("SELECT 1;")
    db = SliceDatabase(tmp_path / "s.db", folder)
    with pytest.raises(MigrationError, match="duplicate migration numbers"):
        await db.open()
    await db.close()


@pytest.mark.asyncio
async def test_transaction_rolls_back_on_error(tmp_path):
    db = SliceDatabase(tmp_path / "s.db", write_migrations(tmp_path / "m", "CREATE TABLE t (v INTEGER);"))
    await db.open()
    with pytest.raises(ZeroDivisionError):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (1)")
            1 / 0
    assert await db.scalar("SELECT count(*) FROM t") == 0
    await db.close()


@pytest.mark.asyncio
async def test_a_transaction_cancelled_while_it_begins_leaves_the_connection_usable(tmp_path):
    db = SliceDatabase(tmp_path / "s.db", write_migrations(tmp_path / "m", "CREATE TABLE t (v INTEGER);"))
    await db.open()
    entered = asyncio.Event()

    async def write() -> None:
        async with db.transaction() as conn:
            entered.set()
            await conn.execute("INSERT INTO t VALUES (1)")

    task = asyncio.create_task(write())
    await asyncio.sleep(0)  # the task now awaits its BEGIN, which runs on the database thread
    assert not entered.is_set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with db.transaction() as conn:  # would fail: "cannot start a transaction within a transaction"
        await conn.execute("INSERT INTO t VALUES (2)")
    assert await db.scalar("SELECT group_concat(v) FROM t") == "2"
    await db.close()


def _insert_then(conn, values, fail):
    for v in values:
        conn.execute("INSERT INTO t VALUES (?)", (v,))
    if fail:
        raise ValueError("refused after the inserts")
    return conn.execute("SELECT count(*) FROM t").fetchone()[0]


def _thread_name(conn):
    import threading

    return threading.current_thread().name


@pytest.mark.asyncio
async def test_atomic_runs_a_function_as_one_transaction_on_the_database_thread(tmp_path):
    import threading

    db = SliceDatabase(tmp_path / "s.db", write_migrations(tmp_path / "m", "CREATE TABLE t (v INTEGER);"))
    await db.open()
    assert await db.atomic(_insert_then, [1, 2, 3], False) == 3
    with pytest.raises(ValueError, match="refused after the inserts"):
        await db.atomic(_insert_then, [4, 5], True)
    assert await db.scalar("SELECT group_concat(v) FROM t") == "1,2,3"  # 4 and 5 rolled back
    assert not db.conn.in_transaction
    assert await db.run(_thread_name) != threading.current_thread().name
    # the same rows another connection sees: committed, on disk
    other = sqlite3.connect(tmp_path / "s.db")
    assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 3
    other.close()

    # Concurrent atomic calls and transactions never interleave.
    async def tx(v: int) -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (?)", (v,))
            await asyncio.sleep(0)
            await conn.execute("INSERT INTO t VALUES (?)", (v,))

    await asyncio.gather(*(db.atomic(_insert_then, [10 + i, 10 + i], False) for i in range(5)), tx(20), tx(21))
    rows = [r[0] for r in await db.fetchall("SELECT v FROM t WHERE v >= 10 ORDER BY rowid")]
    assert rows[0::2] == rows[1::2] and sorted(rows[0::2]) == [10, 11, 12, 13, 14, 20, 21]
    await db.close()


@pytest.mark.asyncio
async def test_queries_return_rows_and_ids(tmp_path):
    db = SliceDatabase(
        tmp_path / "s.db", write_migrations(tmp_path / "m", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);")
    )
    await db.open()
    assert await db.execute("INSERT INTO t (v) VALUES (?)", ("a",)) == 1
    assert await db.execute("INSERT INTO t (v) VALUES (?)", ("b",)) == 2
    await db.executemany("INSERT INTO t (v) VALUES (?)", [("c",), ("d",)])
    row = await db.fetchone("SELECT id, v FROM t WHERE v = ?", ("b",))
    assert (row["id"], row["v"]) == (2, "b")
    assert await db.fetchone("SELECT id FROM t WHERE v = 'zz'") is None
    assert [r["v"] for r in await db.fetchall("SELECT v FROM t ORDER BY id")] == ["a", "b", "c", "d"]
    assert await db.scalar("SELECT count(*) FROM t") == 4
    with pytest.raises(sqlite3.IntegrityError):
        await db.executemany("INSERT INTO t (id, v) VALUES (?, ?)", [(10, "x"), (1, "dup")])
    assert await db.scalar("SELECT count(*) FROM t") == 4  # all or nothing
    await db.close()


@pytest.mark.asyncio
async def test_a_flush_cancelled_while_its_batch_is_written_counts_the_rows_once(tmp_path):
    db = SliceDatabase(tmp_path / "s.db", write_migrations(tmp_path / "m", "CREATE TABLE t (v INTEGER);"))
    await db.open()
    writer = db.batch_writer("INSERT INTO t VALUES (?)", max_batch=4, interval=60)
    writer.add((0,))
    await asyncio.sleep(0)  # the writer's own task now waits its 60 s interval: the flush below is ours
    for i in range(1, 10):
        writer.add((i,))
    task = asyncio.create_task(writer.flush())
    await asyncio.sleep(0)  # the first batch of 4 is on its way to the database thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await db.scalar("SELECT count(*) FROM t") == 4 and writer.written == 4
    assert writer.pending == 6  # the batches not sent yet wait for the next flush
    await writer.committed()
    assert await db.scalar("SELECT group_concat(v) FROM t") == "0,1,2,3,4,5,6,7,8,9"
    assert not writer.unsettled and writer.written == 10 and writer.errors == 0
    await db.close()


@pytest.mark.asyncio
async def test_batch_writer_groups_rows_and_flushes_on_close(tmp_path):
    db = SliceDatabase(tmp_path / "s.db", write_migrations(tmp_path / "m", "CREATE TABLE t (v INTEGER);"))
    await db.open()
    writer = db.batch_writer("INSERT INTO t VALUES (?)", max_batch=100, interval=0.01)
    for i in range(250):
        writer.add((i,))
    # nobody awaits the rows: the writer's own task commits them
    deadline = asyncio.get_running_loop().time() + 30
    while writer.written < 200 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert await db.scalar("SELECT count(*) FROM t") >= 200
    writer.add((999,))
    await db.close()  # flushes what is left
    con = sqlite3.connect(tmp_path / "s.db")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (251,)
    assert writer.written == 251 and writer.errors == 0


@pytest.mark.asyncio
async def test_write_returns_once_committed_and_writers_group_concurrent_rows(tmp_path):
    db = SliceDatabase(tmp_path / "s.db", write_migrations(tmp_path / "m", "CREATE TABLE t (v INTEGER);"))
    await db.open()
    writer = db.batch_writer("INSERT INTO t VALUES (?)", interval=60)  # only waiters make it write
    reader = sqlite3.connect(tmp_path / "s.db")
    await writer.write((1,))
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)
    await asyncio.gather(*(writer.write((i,)) for i in range(2, 102)))
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (101,)
    assert writer.written == 101 and writer.batches <= 3  # rows waiting together share a commit
    writer.add((500,))
    writer.add((501,))
    assert writer.unsettled
    await committed()  # every batch writer of the loop
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (103,) and not writer.unsettled
    await committed()  # nothing waiting: returns at once
    reader.close()
    await db.close()


@pytest.mark.asyncio
async def test_write_raises_when_its_batch_fails(tmp_path):
    db = SliceDatabase(tmp_path / "s.db", write_migrations(tmp_path / "m", "CREATE TABLE t (v INTEGER NOT NULL);"))
    await db.open()
    writer = db.batch_writer("INSERT INTO t VALUES (?)", interval=60)
    with pytest.raises(BatchWriteFailed, match="s.db: 1 rows not written: NOT NULL constraint failed"):
        await writer.write((None,))
    writer.add((None,))
    with pytest.raises(BatchWriteFailed):
        await committed()
    await writer.write((1,))  # later rows are not blamed for an earlier failure
    assert writer.errors == 2 and writer.written == 1
    await db.close()


# -- the file under an open connection --------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("attack", ["delete", "replace"])
async def test_a_database_file_deleted_or_replaced_while_open_is_noticed(tmp_path, caplog, attack):
    path = tmp_path / "s.db"
    db = SliceDatabase(path, write_migrations(tmp_path / "m", "CREATE TABLE t (v INTEGER);"))
    await db.open()
    await db.execute("INSERT INTO t VALUES (1)")
    writer = db.batch_writer("INSERT INTO t VALUES (?)", interval=60)
    await writer.write((2,))
    assert db.file_problem() is None

    if attack == "delete":
        path.unlink()
    else:
        other = sqlite3.connect(tmp_path / "other.db")
        other.execute("CREATE TABLE x (y INTEGER)")
        other.close()
        os.replace(tmp_path / "other.db", path)
    what = "deleted" if attack == "delete" else "replaced"
    assert db.file_problem() == f"database file {path} was {what} while open"
    assert [r.levelname for r in caplog.records if f"was {what} while open" in r.getMessage()] == ["ERROR"]

    # Writes fail loudly instead of succeeding into a file nobody will read again.
    with pytest.raises(DatabaseFileLost, match=f"was {what} while open; write refused"):
        await db.execute("INSERT INTO t VALUES (3)")
    with pytest.raises(DatabaseFileLost):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (4)")
    with pytest.raises(DatabaseFileLost, match=f"was {what} while open; write refused"):
        await db.atomic(_insert_then, [4], False)
    with pytest.raises(BatchWriteFailed, match=f"was {what} while open"):
        await writer.write((5,))
    await db.close()

    # What the connection still held is saved owner-only next to the path, and the loss is logged.
    (saved,) = tmp_path.glob("s.db.lost-*")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    con = sqlite3.connect(saved)
    assert con.execute("SELECT v FROM t ORDER BY v").fetchall() == [(1,), (2,)]
    con.close()
    assert any("saved in" in r.getMessage() and str(saved) in r.getMessage() for r in caplog.records)

    # Reopening starts from the file at the path, and says so as an error.
    caplog.clear()
    fresh = SliceDatabase(path, write_migrations(tmp_path / "m", "CREATE TABLE t (v INTEGER);"))
    await fresh.open()
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"{path}: opening a fresh, empty database: database file {path} was {what} while open;"
        " its rows are not in the new file"
    ]
    assert fresh.file_problem() is None
    await fresh.execute("INSERT INTO t VALUES (6)")
    await fresh.close()


# -- permissions ------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o277])
async def test_database_files_are_owner_only_whatever_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        db = SliceDatabase(
            tmp_path / "new" / "slices" / "s.db", write_migrations(tmp_path / "m", "CREATE TABLE t (v);")
        )
        await db.open()
        await db.execute("INSERT INTO t VALUES (1)")
        for name in ("s.db", "s.db-wal", "s.db-shm"):
            assert stat.S_IMODE((tmp_path / "new" / "slices" / name).stat().st_mode) == 0o600, name
        assert stat.S_IMODE((tmp_path / "new" / "slices").stat().st_mode) == 0o700
        await db.close()
    finally:
        os.umask(old)


@pytest.mark.asyncio
async def test_loose_database_files_are_tightened_when_opened(tmp_path, caplog):
    path = tmp_path / "s.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (v)")
    con.close()
    os.chmod(path, 0o644)
    db = SliceDatabase(path)
    await db.open()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "s.db-wal").stat().st_mode) == 0o600
    assert any("0644 -> 0600" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    await db.close()
