from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from refactorbot import AtomicSlice, ErrorType, Event, HealthState, operation, subscribe
from refactorbot.testing import host_running, plugin_of
from refactorbot_example_notes.pages import render_notes_page
from refactorbot_example_notes.slice import NotesSlice

PLUGIN = "refactorbot_example_notes.plugin"
QUIET = {"core": {"health_interval": 3600}}


async def call_ok(host: Any, target: str, **payload: Any) -> Any:
    response = await host.call(target, **payload)
    assert response.success, response.error_message
    return response.data


@pytest.mark.asyncio
async def test_round_trip_survives_a_restart(rb_home: Path) -> None:
    async with host_running(rb_home, [PLUGIN], config=QUIET) as host:
        milk = await call_ok(host, "notes.add", title="  Buy milk ", tags=["Home", "shop"])
        await call_ok(host, "notes.add", title="Write report", body="quarterly", list_name="work")
        done = await call_ok(host, "notes.complete", id=milk["id"])
        assert done["done"] is True
        assert done["updated_at"] >= done["created_at"]
    assert milk["title"] == "Buy milk"
    assert milk["tags"] == ["home", "shop"]
    assert milk["list_name"] == "inbox"

    db_file = rb_home / "slices" / "notes.db"
    with sqlite3.connect(db_file) as conn:
        rows = conn.execute("SELECT title, done, list_name FROM notes ORDER BY id").fetchall()
    assert rows == [("Buy milk", 1, "inbox"), ("Write report", 0, "work")]

    async with host_running(rb_home, [PLUGIN], config=QUIET) as host:
        listed = await call_ok(host, "notes.list")
        assert [n["title"] for n in listed["notes"]] == ["Write report", "Buy milk"]
        assert listed["total"] == 2
        open_notes = await call_ok(host, "notes.list", done=False)
        assert [n["title"] for n in open_notes["notes"]] == ["Write report"]
        reopened = await call_ok(host, "notes.complete", id=milk["id"], done=False)
        assert reopened["done"] is False


@pytest.mark.asyncio
async def test_list_filters_and_paging(rb_host: Any) -> None:
    for title, tags, list_name in [
        ("eggs", ["shop"], "groceries"),
        ("bread", ["shop", "bakery"], "groceries"),
        ("call mum", [], "inbox"),
        ("fix bike", ["garage"], "inbox"),
    ]:
        await call_ok(rb_host, "notes.add", title=title, tags=tags, list_name=list_name)
    groceries = await call_ok(rb_host, "notes.list", list_name="groceries")
    assert {n["title"] for n in groceries["notes"]} == {"eggs", "bread"}
    shop = await call_ok(rb_host, "notes.list", tag="shop")
    assert [n["title"] for n in shop["notes"]] == ["bread", "eggs"]
    bakery = await call_ok(rb_host, "notes.list", tag="bakery", list_name="groceries")
    assert [n["title"] for n in bakery["notes"]] == ["bread"]
    page = await call_ok(rb_host, "notes.list", limit=2, offset=1)
    assert [n["title"] for n in page["notes"]] == ["call mum", "bread"]
    assert page["total"] == 4


@pytest.mark.asyncio
async def test_search_matches_text_literally(rb_host: Any) -> None:
    await call_ok(rb_host, "notes.add", title="Discount 100% off", body="at the corner shop")
    await call_ok(rb_host, "notes.add", title="Plain note", body="nothing special")
    await call_ok(rb_host, "notes.add", title="snake_case names")
    found = await call_ok(rb_host, "notes.search", query="100%")
    assert [n["title"] for n in found["notes"]] == ["Discount 100% off"]
    assert (await call_ok(rb_host, "notes.search", query="CORNER"))["total"] == 1
    # `_` and `%` are literal, not LIKE wildcards.
    assert [n["title"] for n in (await call_ok(rb_host, "notes.search", query="e_c"))["notes"]] == ["snake_case names"]
    assert (await call_ok(rb_host, "notes.search", query="%"))["total"] == 1


@pytest.mark.asyncio
async def test_max_notes_is_enforced_with_a_clear_error(rb_host: Any) -> None:
    for i in range(5):  # rb_config sets max_notes = 5
        await call_ok(rb_host, "notes.add", title=f"note {i}")
    refused = await rb_host.call("notes.add", title="one too many")
    assert not refused.success
    assert refused.error_type is ErrorType.OPERATION_ERROR
    assert "max_notes = 5" in refused.error_message
    assert "\n" not in refused.error_message
    await call_ok(rb_host, "notes.delete", id=1)
    await call_ok(rb_host, "notes.add", title="fits again")


@pytest.mark.asyncio
async def test_config_from_environment_overrides_the_file(rb_home: Path) -> None:
    config = {**QUIET, "slices": {"notes": {"max_notes": 10, "default_list": "todo"}}}
    async with host_running(rb_home, [PLUGIN], config=config, env={"RB_NOTES_MAX_NOTES": "1"}) as host:
        note = await call_ok(host, "notes.add", title="first")
        assert note["list_name"] == "todo"
        refused = await host.call("notes.add", title="second")
        assert "max_notes = 1" in refused.error_message


@pytest.mark.asyncio
async def test_invalid_config_keeps_the_slice_down_with_the_reason(rb_home: Path) -> None:
    config = {**QUIET, "slices": {"notes": {"max_notes": 0, "colour": "red"}}}
    async with host_running(rb_home, [PLUGIN], config=config) as host:
        status = {s["slice_id"]: s for s in host.slice_status()}["notes"]
        assert status["status"] == "failed"
        assert "[slices.notes]" in status["error"] and "max_notes" in status["error"]
        response = await host.call("notes.list")
        assert response.error_type is ErrorType.SLICE_UNAVAILABLE


@pytest.mark.asyncio
async def test_invalid_input_is_refused_with_one_line(rb_host: Any) -> None:
    cases = [
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "tags": ["two words"]}, "tags.0"),
        ({"title": "ok", "priority": 3}, "priority"),
    ]
    for payload, field in cases:
        response = await rb_host.call("notes.add", **payload)
        assert response.error_type is ErrorType.INVALID_PAYLOAD, payload
        assert field in response.error_message and "\n" not in response.error_message
    missing = await rb_host.call("notes.complete", id=42)
    assert missing.error_type is ErrorType.OPERATION_ERROR
    assert missing.error_message == "note 42 does not exist"
    assert (await call_ok(rb_host, "notes.list"))["total"] == 0


class Recorder(AtomicSlice):
    """Record notes events and read notes back through the host."""

    slice_id = "recorder"
    requires = ("notes",)
    uses_database = False

    def __init__(self, ctx: Any, config: Any = None) -> None:
        super().__init__(ctx, config)
        self.events: list[Event] = []

    @subscribe("notes.*")
    async def on_notes(self, event: Event) -> None:
        self.events.append(event)

    @operation
    async def open_titles(self) -> list[str]:
        """Return the titles of open notes, asked of the notes slice."""
        listed = await self.ctx.call("notes.list", done=False)
        return [n["title"] for n in listed["notes"]]


RECORDER = plugin_of(slices=[Recorder], name="recorder")


@pytest.mark.asyncio
async def test_other_slices_see_events_and_call_operations(rb_home: Path) -> None:
    async with host_running(rb_home, [PLUGIN, RECORDER], config=QUIET) as host:
        note = await call_ok(host, "notes.add", title="water plants")
        await call_ok(host, "notes.add", title="read book")
        await call_ok(host, "notes.complete", id=note["id"])
        assert await call_ok(host, "recorder.open_titles") == ["read book"]
        recorder = host.instance("recorder")
        await host.bus.stop()  # drains queued events
        topics = [(e.topic, e.payload["title"], e.source) for e in recorder.events]
    assert topics == [
        ("notes.added", "water plants", "notes"),
        ("notes.added", "read book", "notes"),
        ("notes.completed", "water plants", "notes"),
    ]


@pytest.mark.asyncio
async def test_dashboard_page_is_registered(rb_host: Any) -> None:
    pages = rb_host.plugins.registry.pages
    assert list(pages) == ["notes/dashboard"]
    page = pages["notes/dashboard"]
    assert page.plugin == PLUGIN
    assert page.obj.title == "Notes" and page.obj.kind == "dashboard" and page.obj.group == "notes"
    assert page.obj.render is render_notes_page
    assert page.obj.path == "notes-dashboard"


@pytest.mark.asyncio
async def test_health_and_diagnostics(rb_host: Any) -> None:
    await call_ok(rb_host, "notes.add", title="check me")
    instance = rb_host.instance("notes")
    assert isinstance(instance, NotesSlice)
    assert (await instance.health_check()).status is HealthState.HEALTHY
    report = await instance.run_self_diagnostics()
    assert report.passed, report
    assert {c.name for c in report.checks} >= {"health", "database_integrity", "migrations", "schemas"}
