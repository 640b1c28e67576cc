import asyncio
import sqlite3

import pytest
from refactorbot.database import SliceDatabase
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
async def test_batch_writer_groups_rows_and_flushes_on_close(tmp_path):
    db = SliceDatabase(tmp_path / "s.db", write_migrations(tmp_path / "m", "CREATE TABLE t (v INTEGER);"))
    await db.open()
    writer = db.batch_writer("INSERT INTO t VALUES (?)", max_batch=100, interval=0.01)
    for i in range(250):
        writer.add((i,))
    await asyncio.sleep(0.1)
    assert await db.scalar("SELECT count(*) FROM t") >= 200
    writer.add((999,))
    await db.close()  # flushes what is left
    con = sqlite3.connect(tmp_path / "s.db")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (251,)
    assert writer.written == 251 and writer.errors == 0
