"""SliceDatabase.prune: the oldest rows past an age or a row-count bound, deleted in short batched transactions."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from refactorbot.database import Pruner, SliceDatabase
from refactorbot.slice import RetentionConfig

SCHEMA = """
CREATE TABLE events (id INTEGER PRIMARY KEY, ts REAL, kind TEXT NOT NULL DEFAULT 'done', body TEXT);
CREATE INDEX events_ts ON events (ts);
CREATE TABLE totals (kind TEXT PRIMARY KEY, rows INTEGER NOT NULL);
CREATE TABLE keyed (k TEXT PRIMARY KEY, ts REAL) WITHOUT ROWID;
"""


async def open_db(tmp_path: Path) -> SliceDatabase:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_events.sql").write_text(SCHEMA)
    db = SliceDatabase(tmp_path / "slice.db", migrations)
    await db.open()
    return db


async def fill(db: SliceDatabase, stamps: list[float | None], kind: str = "done") -> None:
    await db.executemany("INSERT INTO events (ts, kind, body) VALUES (?, ?, 'x')", [(ts, kind) for ts in stamps])


async def stamps(db: SliceDatabase) -> list[float | None]:
    return [row[0] for row in await db.fetchall("SELECT ts FROM events ORDER BY ts, id")]


@pytest.mark.asyncio
async def test_rows_older_than_the_age_go_and_newer_ones_stay(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    try:
        now = 1_700_000_000.0
        await fill(db, [now - 10 * 86_400 + i for i in range(50)] + [now - 3600 + i for i in range(20)])
        deleted = await db.prune("events", "ts", max_age_seconds=86_400, batch=7, now=now)
        assert deleted == 50
        assert await stamps(db) == [now - 3600 + i for i in range(20)]
        assert await db.prune("events", "ts", max_age_seconds=86_400, batch=7, now=now) == 0
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_max_rows_keeps_the_newest_by_time_not_by_insertion(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    try:
        # Inserted out of time order: the bound follows ts (then rowid for equal times).
        await fill(db, [float(t) for t in (50, 10, 40, 30, 30, 20, 60)])
        ids_at_30 = [r[0] for r in await db.fetchall("SELECT id FROM events WHERE ts = 30 ORDER BY id")]
        deleted = await db.prune("events", "ts", max_rows=4, batch=2)
        assert deleted == 3
        assert await stamps(db) == [30.0, 40.0, 50.0, 60.0]
        # Of the two rows at ts 30, the later one (higher rowid) is the newer and stays.
        assert [r[0] for r in await db.fetchall("SELECT id FROM events WHERE ts = 30")] == ids_at_30[1:]
        assert await db.prune("events", "ts", max_rows=4) == 0
        assert await db.prune("events", "ts", max_rows=0) == 4
        assert await db.scalar("SELECT count(*) FROM events") == 0
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_both_bounds_together_and_rows_without_a_time_count_as_oldest(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    try:
        now = time.time()
        await fill(db, [None, None])
        await fill(db, [now - 5 * 86_400 + i for i in range(30)])  # past the age
        await fill(db, [now - 1000 + i for i in range(40)])
        deleted = await db.prune("events", "ts", max_age_seconds=86_400, max_rows=25, batch=8)
        # Rows without a time are never "older than" a cutoff, but they sort first for the count bound.
        assert deleted == 30 + 2 + 15
        assert await stamps(db) == [now - 1000 + i for i in range(15, 40)]
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_each_batch_is_its_own_transaction(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    try:
        await fill(db, [float(i) for i in range(1000)])
        begins: list[str] = []
        await db.run(lambda conn: conn.set_trace_callback(lambda sql: begins.append(sql) if sql == "BEGIN" else None))
        deleted = await db.prune("events", "ts", max_rows=100, batch=64)
        await db.run(lambda conn: conn.set_trace_callback(None))
        assert deleted == 900
        assert len(begins) == 15  # ceil(900 / 64): 14 full batches and the last one
        assert await stamps(db) == [float(i) for i in range(900, 1000)]
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_a_write_lands_between_batches_of_a_long_prune(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    try:
        await fill(db, [float(i) for i in range(2000)])
        loop = asyncio.get_running_loop()
        first_batch = asyncio.Event()

        def signal(conn: sqlite3.Connection, rowids: list[int]) -> None:
            loop.call_soon_threadsafe(first_batch.set)

        pruning = asyncio.create_task(db.prune("events", "ts", max_age_seconds=0, batch=100, before_delete=signal))
        await first_batch.wait()
        row = await db.execute("INSERT INTO events (ts, kind) VALUES (?, 'late')", (time.time() + 3600,))
        assert not pruning.done(), "the write waited for the whole prune"
        assert await pruning == 2000
        assert [r[0] for r in await db.fetchall("SELECT id FROM events")] == [row]
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_where_keeps_rows_that_must_stay(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    try:
        await fill(db, [1.0, 2.0, 3.0], kind="queued")
        await fill(db, [float(t) for t in range(4, 14)])
        deleted = await db.prune(
            "events", "ts", max_age_seconds=0, where="kind NOT IN (?, ?)", where_params=("queued", "running"), now=8.5
        )
        assert deleted == 5  # ts 4..8; the queued rows are older but stay
        assert await stamps(db) == [1.0, 2.0, 3.0, *[float(t) for t in range(9, 14)]]
        # They count toward max_rows: the newest 6 rows are ts 3 and 9..13, and only queued rows are older.
        deleted = await db.prune("events", "ts", max_rows=6, where="kind <> 'queued'")
        assert deleted == 0
        deleted = await db.prune("events", "ts", max_rows=1, where="kind <> 'queued'")
        assert deleted == 4  # ts 9..12 go; the queued 1..3 are older but stay
        assert await stamps(db) == [1.0, 2.0, 3.0, 13.0]
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_before_delete_runs_in_the_batch_transaction(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    try:
        await fill(db, [float(i) for i in range(10)], kind="a")
        await fill(db, [float(i) for i in range(10, 15)], kind="b")

        def fold(conn: sqlite3.Connection, rowids: list[int]) -> None:
            marks = ", ".join("?" for _ in rowids)
            conn.execute(
                "INSERT INTO totals (kind, rows) SELECT kind, count(*) FROM events"  # noqa: S608  placeholders only
                f" WHERE id IN ({marks}) GROUP BY kind"
                " ON CONFLICT (kind) DO UPDATE SET rows = rows + excluded.rows",
                rowids,
            )

        assert await db.prune("events", "ts", max_rows=3, batch=4, before_delete=fold) == 12
        assert {r[0]: r[1] for r in await db.fetchall("SELECT kind, rows FROM totals")} == {"a": 10, "b": 2}

        def refuse(conn: sqlite3.Connection, rowids: list[int]) -> None:
            conn.execute("UPDATE totals SET rows = -1")
            raise RuntimeError("fold failed")

        with pytest.raises(RuntimeError, match="fold failed"):
            await db.prune("events", "ts", max_rows=0, before_delete=refuse)
        assert await db.scalar("SELECT count(*) FROM events") == 3  # the batch was rolled back
        assert await db.scalar("SELECT min(rows) FROM totals") == 2
    finally:
        await db.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("table", "column", "kwargs", "message"),
    [
        ("events; DROP TABLE totals", "ts", {}, "table 'events; DROP TABLE totals' is not a plain SQL identifier"),
        ("events", 'ts" OR 1=1 --', {}, "time_column 'ts\" OR 1=1 --' is not a plain SQL identifier"),
        ("missing", "ts", {}, "no table 'missing' in slice.db"),
        ("events", "created", {}, "table 'events' has no column 'created' in slice.db"),
        ("keyed", "ts", {}, "table 'keyed' is WITHOUT ROWID in slice.db"),
        ("events", "ts", {"max_age_seconds": -1}, "max_age_seconds must be a finite number >= 0, not -1"),
        ("events", "ts", {"max_age_seconds": float("nan")}, "max_age_seconds must be a finite number >= 0, not nan"),
        ("events", "ts", {"max_rows": -5}, "max_rows must be an integer >= 0, not -5"),
        ("events", "ts", {"max_rows": True}, "max_rows must be an integer >= 0, not True"),
        ("events", "ts", {"max_rows": 2.5}, "max_rows must be an integer >= 0, not 2.5"),
        ("events", "ts", {"batch": 0}, "batch must be an integer from 1 to 100000, not 0"),
        ("events", "ts", {"batch": 1_000_000}, "batch must be an integer from 1 to 100000, not 1000000"),
        ("events", "ts", {"where": "1; DELETE FROM totals"}, "where must be one non-empty SQL condition"),
    ],
)
async def test_bad_arguments_are_refused_with_one_line(
    tmp_path: Path, table: str, column: str, kwargs: dict[str, object], message: str
) -> None:
    db = await open_db(tmp_path)
    try:
        await fill(db, [1.0, 2.0])
        with pytest.raises(ValueError) as caught:
            await db.prune(table, column, **kwargs)  # type: ignore[arg-type]
        assert str(caught.value) == f"prune: {message}"
        assert "\n" not in str(caught.value)
        assert await db.scalar("SELECT count(*) FROM events") == 2
        assert await db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'totals'") == 1
    finally:
        await db.close()


# -- Pruner: the periodic pass off the request path ---------------------------------------------


@pytest.mark.asyncio
async def test_the_pruner_runs_at_start_then_every_interval_and_logs_what_went(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = await open_db(tmp_path)
    passes: asyncio.Queue[int] = asyncio.Queue()

    async def prune() -> int:
        deleted = await db.prune("events", "ts", max_rows=2)
        passes.put_nowait(deleted)
        return deleted

    pruner = Pruner(prune, interval=0.01, logger=logging.getLogger("test.pruner"), what="events")
    await fill(db, [1.0, 2.0, 3.0, 4.0, 5.0])
    with caplog.at_level(logging.INFO, "test.pruner"):
        pruner.start()
        assert await asyncio.wait_for(passes.get(), 10) == 3  # the first pass at once
        await fill(db, [6.0])
        while await asyncio.wait_for(passes.get(), 10) == 0:  # a later pass takes the new surplus
            pass
        await pruner.stop()
    assert await stamps(db) == [5.0, 6.0]
    assert [r.getMessage() for r in caplog.records] == ["retention: deleted 3 events", "retention: deleted 1 events"]
    await pruner.stop()  # stopping twice is harmless
    await db.close()


@pytest.mark.asyncio
async def test_a_failed_pass_is_logged_and_retried_and_run_raises_to_its_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes: list[Exception | int] = [RuntimeError("disk full"), 7]
    done = asyncio.Event()

    async def prune() -> int:
        outcome = outcomes.pop(0) if outcomes else 0
        if not outcomes:
            done.set()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    pruner = Pruner(prune, interval=0.01, logger=logging.getLogger("test.pruner"), what="rows")
    with caplog.at_level(logging.INFO, "test.pruner"):
        pruner.start()
        await asyncio.wait_for(done.wait(), 10)
        await pruner.stop()
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == ["pruning rows failed"] and failed[0].exc_info is not None
    assert "retention: deleted 7 rows" in [r.getMessage() for r in caplog.records]

    async def broken() -> int:
        raise RuntimeError("locked")

    with pytest.raises(RuntimeError, match="locked"):
        await Pruner(broken, interval=1, logger=logging.getLogger("test.pruner"), what="rows").run()


@pytest.mark.asyncio
async def test_passes_never_overlap() -> None:
    running = 0
    most = 0
    release = asyncio.Event()

    async def prune() -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return 0

    pruner = Pruner(prune, interval=3600, logger=logging.getLogger("test.pruner"), what="rows")
    pruner.start()  # its first pass waits on ``release``
    asked = [asyncio.ensure_future(pruner.run()) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*asked) == [0, 0, 0]
    await pruner.stop()
    assert most == 1


@pytest.mark.parametrize("interval", [0, -1, float("nan"), True, "60"])
def test_a_bad_interval_is_refused(interval: object) -> None:
    async def prune() -> int:
        return 0

    with pytest.raises(ValueError, match="interval must be a positive number of seconds"):
        Pruner(prune, interval=interval, logger=logging.getLogger("x"), what="rows")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_pass_asked_for_after_start_runs_after_the_start_pass(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    order: list[str] = []

    async def prune() -> int:
        order.append("pass")
        return await db.prune("events", "ts", max_rows=1)

    pruner = Pruner(prune, interval=3600, logger=logging.getLogger("test.pruner"), what="events")
    pruner.start()  # its task has not run yet
    asked = asyncio.ensure_future(pruner.run())
    assert await asked == 0 and order == ["pass", "pass"]  # the start pass first, then the one asked for
    await fill(db, [1.0, 2.0, 3.0])  # written after: only a later pass takes them
    assert await stamps(db) == [1.0, 2.0, 3.0]
    assert await pruner.run() == 2
    await pruner.stop()
    await db.close()


# -- RetentionConfig: the settings of a pruned table ----------------------------------------------


def test_retention_config_gives_the_bounds_and_zero_turns_a_bound_off() -> None:
    assert RetentionConfig().prune_bounds() == {"max_age_seconds": 30 * 86_400, "max_rows": 1_000_000, "batch": 5_000}
    off = RetentionConfig(retention_days=0, retention_max_rows=0, retention_batch=10)
    assert off.prune_bounds() == {"max_age_seconds": None, "max_rows": None, "batch": 10}

    class Longer(RetentionConfig):
        retention_days: float = 90.0

    assert Longer().prune_bounds()["max_age_seconds"] == 90 * 86_400


@pytest.mark.parametrize(
    "bad",
    [
        {"retention_days": -1},
        {"retention_days": float("inf")},
        {"retention_max_rows": -5},
        {"retention_interval": 0},
        {"retention_batch": 0},
        {"retention_batch": 100_001},
        {"retention_typo": 1},
    ],
)
def test_retention_config_refuses_bad_settings(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RetentionConfig(**bad)  # type: ignore[arg-type]
