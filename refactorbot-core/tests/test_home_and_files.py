"""The home is private, and a slice notices when its database file is taken from under it."""

import asyncio
import logging
import os
import sqlite3
import stat
import time

import pytest
from pydantic import BaseModel
from refactorbot import AtomicSlice, hookimpl, operation
from refactorbot.testing import host_running

SUPERVISED = {"core": {"health_interval": 0.05, "restart_backoff": 0.05, "stop_timeout": 2.0}}


class Note(BaseModel):
    text: str


class Target(BaseModel):
    slice_id: str


class NotesSlice(AtomicSlice):
    slice_id = "notes"

    async def initialize(self) -> None:
        await super().initialize()
        assert self.db is not None
        await self.db.execute("CREATE TABLE IF NOT EXISTS notes (text TEXT)")

    @operation
    async def add(self, params: Note) -> int:
        """Store a note."""
        assert self.db is not None
        await self.db.execute("INSERT INTO notes VALUES (?)", (params.text,))
        return int(await self.db.scalar("SELECT count(*) FROM notes"))


class VandalSlice(AtomicSlice):
    slice_id = "vandal"
    uses_database = False

    @operation
    async def delete_db(self, params: Target) -> None:
        """Delete another slice's database file."""
        (self.ctx.data_dir / f"{params.slice_id}.db").unlink()


class Plugin:
    REFACTORBOT_API = 1

    @hookimpl
    def register_slices(self, register):
        register(NotesSlice)
        register(VandalSlice)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


async def wait_for(condition, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_a_slice_whose_database_is_deleted_by_another_refuses_writes_and_reports_unhealthy(tmp_path):
    async with host_running(tmp_path, [Plugin()], config={"core": {"health_interval": 3600}}) as host:
        assert (await host.call("notes.add", text="kept")).data == 1
        instance = host.instance("notes")
        assert (await instance.health_check()).healthy
        assert (await host.call("vandal.delete_db", slice_id="notes")).success

        # The write no longer "succeeds" into the unlinked file.
        refused = await host.call("notes.add", text="lost")
        assert not refused.success
        assert f"database file {tmp_path / 'slices' / 'notes.db'} was deleted while open" in refused.error_message

        health = await instance.health_check()
        assert not health.healthy and health.message.endswith("notes.db was deleted while open")
        report = await instance.run_self_diagnostics()
        check = next(c for c in report.checks if c.name == "database_file")
        assert not check.passed and "was deleted while open" in check.detail
        assert not report.passed


@pytest.mark.asyncio
async def test_the_supervisor_restarts_it_on_a_fresh_database_and_reports_the_loss(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="refactorbot")
    async with host_running(tmp_path, [Plugin()], config=SUPERVISED) as host:
        assert (await host.call("notes.add", text="kept")).data == 1
        assert (await host.call("vandal.delete_db", slice_id="notes")).success

        def notes() -> dict[str, object]:
            return next(row for row in host.slice_status() if row["slice_id"] == "notes")

        await wait_for(lambda: notes()["restarts"] == 1 and notes()["status"] == "running", "the restart")
        assert (await host.call("notes.add", text="after")).data == 1  # a fresh, empty database

    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("opening a fresh, empty database" in m and "was deleted while open" in m for m in errors), errors
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("slice notes unhealthy: database file") for m in warnings), warnings
    (saved,) = (tmp_path / "slices").glob("notes.db.lost-*")
    assert any(str(saved) in m for m in errors)
    con = sqlite3.connect(saved)
    assert con.execute("SELECT text FROM notes").fetchall() == [("kept",)]
    con.close()


@pytest.mark.asyncio
async def test_home_and_its_databases_are_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        home = tmp_path / "home"
        async with host_running(home, [Plugin()], config={"core": {"health_interval": 3600}}) as host:
            assert (await host.call("notes.add", text="x")).success
            assert mode(home) == 0o700 and mode(home / "slices") == 0o700
            for name in ("master.db", "master.db-wal", "master.db-shm", "refactorbot.toml"):
                assert mode(home / name) == 0o600, name
            for name in ("notes.db", "notes.db-wal", "notes.db-shm"):
                assert mode(home / "slices" / name) == 0o600, name
    finally:
        os.umask(old)


@pytest.mark.asyncio
async def test_a_home_open_to_others_is_tightened_at_start_and_logged(tmp_path, caplog):
    home = tmp_path / "home"
    (home / "slices").mkdir(parents=True)
    os.chmod(home, 0o755)
    os.chmod(home / "slices", 0o775)
    old_db = home / "slices" / "notes.db"
    sqlite3.connect(old_db).close()
    os.chmod(old_db, 0o644)
    (home / "stray.txt").write_text("x")
    os.chmod(home / "stray.txt", 0o666)
    async with host_running(home, [Plugin()], config={"core": {"health_interval": 3600}}):
        assert mode(home) == 0o700 and mode(home / "slices") == 0o700
        assert mode(old_db) == 0o600 and mode(home / "stray.txt") == 0o600
        assert mode(home / "refactorbot.toml") == 0o600
    (record,) = [r for r in caplog.records if "was open to other users" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert f"{home} 0755 -> 0700" in record.getMessage() and "0666 -> 0600" in record.getMessage()


def test_secure_home_creates_a_private_home_under_a_strict_or_loose_umask(tmp_path, caplog):
    from refactorbot.home import secure_home

    for umask, name in ((0o000, "loose"), (0o077, "strict")):
        old = os.umask(umask)
        try:
            home = tmp_path / name / "refactorbot"
            assert secure_home(home) == []
            assert mode(home) == 0o700
        finally:
            os.umask(old)
    # A folder just made by someone else's mkdir, still empty, exposed nothing: no warning.
    fresh = tmp_path / "fresh"
    fresh.mkdir(mode=0o755)
    os.chmod(fresh, 0o755)
    assert secure_home(fresh) == [f"{fresh} 0755 -> 0700"] and mode(fresh) == 0o700
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
