"""Group commit of the per-message writes, on a real SQLite file read back through its own connection."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from refactorbot import SliceDatabase
from refactorbot_slice_communication.grouped import MAX_GROUP, GroupCommit


def _insert(conn: sqlite3.Connection, key: str) -> int:
    return conn.execute("INSERT INTO items (key) VALUES (?)", (key,)).lastrowid or 0


def _insert_then_fail(conn: sqlite3.Connection, key: str) -> int:
    conn.execute("INSERT INTO items (key) VALUES (?)", (key,))
    raise ValueError(f"refused {key}")


def _stored(path: Path) -> list[str]:
    """Read the file through a connection of its own: only committed rows are there."""
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT key FROM items ORDER BY id")]


@pytest_asyncio.fixture
async def db(tmp_path: Path) -> AsyncIterator[SliceDatabase]:
    database = SliceDatabase(tmp_path / "grouped.db")
    await database.open()
    await database.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE)")
    try:
        yield database
    finally:
        await database.close()


@pytest.mark.asyncio
async def test_writes_asked_together_commit_in_one_transaction(db: SliceDatabase) -> None:
    grouped = GroupCommit(db)
    rows = await asyncio.gather(*(grouped.run(_insert, f"k{i}") for i in range(20)))
    assert sorted(rows) == list(range(1, 21))
    assert grouped.writes == 20 and grouped.transactions == 1
    assert _stored(db.path) == [f"k{i}" for i in range(20)]


@pytest.mark.asyncio
async def test_a_write_is_on_disk_when_its_result_arrives(db: SliceDatabase) -> None:
    grouped = GroupCommit(db)
    seen: list[list[str]] = []

    async def one(key: str) -> None:
        await grouped.run(_insert, key)
        seen.append(_stored(db.path))

    await asyncio.gather(one("a"), one("b"), one("c"))
    assert all({"a", "b", "c"} <= set(stored) for stored in seen)


@pytest.mark.asyncio
async def test_writes_arriving_during_a_transaction_go_in_the_next(db: SliceDatabase) -> None:
    grouped = GroupCommit(db)
    first = grouped.submit(_insert, "first")
    await asyncio.sleep(0)  # the first transaction is on its way to the database thread
    later = [grouped.submit(_insert, f"later{i}") for i in range(5)]
    await asyncio.gather(first, *later)
    assert grouped.transactions == 2 and grouped.writes == 6
    assert _stored(db.path) == ["first"] + [f"later{i}" for i in range(5)]


@pytest.mark.asyncio
async def test_a_failing_write_is_rolled_back_alone(db: SliceDatabase) -> None:
    grouped = GroupCommit(db)
    results = await asyncio.gather(
        grouped.run(_insert, "kept1"),
        grouped.run(_insert_then_fail, "dropped"),
        grouped.run(_insert, "kept1"),  # the unique key: refused by SQLite, alone
        grouped.run(_insert, "kept2"),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert isinstance(results[1], ValueError) and str(results[1]) == "refused dropped"
    assert isinstance(results[2], sqlite3.IntegrityError)
    assert isinstance(results[3], int)
    assert grouped.transactions == 1 and grouped.writes == 2  # the writes committed
    assert _stored(db.path) == ["kept1", "kept2"]


@pytest.mark.asyncio
async def test_a_failed_transaction_fails_every_write_it_carried(db: SliceDatabase) -> None:
    grouped = GroupCommit(db)
    db.path.unlink()  # the file is gone: SliceDatabase refuses to commit to it
    results = await asyncio.gather(*(grouped.run(_insert, f"k{i}") for i in range(3)), return_exceptions=True)
    assert all(isinstance(result, Exception) for result in results), results
    assert grouped.transactions == 0


@pytest.mark.asyncio
async def test_a_cancelled_caller_leaves_its_write_to_commit(db: SliceDatabase) -> None:
    grouped = GroupCommit(db)
    caller = asyncio.ensure_future(grouped.run(_insert, "kept"))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await grouped.drain()
    assert _stored(db.path) == ["kept"]


@pytest.mark.asyncio
async def test_a_large_burst_is_split_into_bounded_transactions(db: SliceDatabase) -> None:
    grouped = GroupCommit(db)
    count = MAX_GROUP * 2 + 10
    await asyncio.gather(*(grouped.run(_insert, f"k{i}") for i in range(count)))
    assert grouped.transactions == 3 and grouped.writes == count
    assert len(_stored(db.path)) == count


@pytest.mark.asyncio
async def test_drain_returns_once_every_queued_write_is_committed(db: SliceDatabase) -> None:
    grouped = GroupCommit(db)
    futures = [grouped.submit(_insert, f"k{i}") for i in range(3)]
    await grouped.drain()
    assert all(future.done() for future in futures)
    assert _stored(db.path) == ["k0", "k1", "k2"]
    await grouped.drain()  # nothing queued: returns at once
