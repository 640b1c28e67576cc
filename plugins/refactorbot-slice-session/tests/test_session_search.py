"""session.search: sessions found by their own fields and by their messages' text."""

from __future__ import annotations

import pytest
from refactorbot.testing import host_running

PLUGIN = "refactorbot_slice_session.plugin"
CONFIG = {"core": {"health_interval": 3600}}


async def ok(host, target, **payload):
    response = await host.call(target, **payload)
    assert response.success, response.error_message
    return response.data


@pytest.mark.asyncio
async def test_search_finds_sessions_by_fields_and_by_messages(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        a = await ok(
            host, "session.get_or_create", channel="telegram", chat_id="chat-42", user_id="alice", title="Trip"
        )
        b = await ok(host, "session.get_or_create", channel="cli", chat_id="c2", user_id="bob")
        c = await ok(host, "session.get_or_create", channel="cli", chat_id="c3", user_id="carol")
        long = "x" * 100 + " the Budget for 2025 is set " + "y" * 100
        await ok(host, "session.append", session_id=b["session_id"], role="user", content=long)
        await ok(host, "session.append", session_id=c["session_id"], role="assistant", content="no match here")

        by_field = await ok(host, "session.search", query="CHAT-42")
        assert [(m["session_id"], m["matched"], m["snippet"]) for m in by_field] == [(a["session_id"], "session", "")]
        assert [m["user_id"] for m in await ok(host, "session.search", query="alic")] == ["alice"]

        by_message = await ok(host, "session.search", query="budget for")
        assert [(m["session_id"], m["matched"]) for m in by_message] == [(b["session_id"], "message")]
        snippet = by_message[0]["snippet"]
        assert "the Budget for 2025" in snippet and snippet.startswith("…") and snippet.endswith("…")
        assert len(snippet) <= 162 and by_message[0]["message_count"] == 1

        both = await ok(host, "session.search", query="c")  # every session has a "c" somewhere
        assert {m["session_id"] for m in both} == {a["session_id"], b["session_id"], c["session_id"]}
        assert len(await ok(host, "session.search", query="c", limit=2)) == 2

        await ok(host, "session.archive", session_id=b["session_id"])
        assert await ok(host, "session.search", query="budget", status="active") == []
        archived = await ok(host, "session.search", query="budget", status="archived")
        assert [m["status"] for m in archived] == ["archived"]
        assert await ok(host, "session.search", query="nowhere to be found") == []


@pytest.mark.asyncio
async def test_search_refuses_bad_queries(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        for payload in (
            {"query": ""},
            {"query": "x" * 201},
            {"query": "a", "limit": 0},
            {"query": "a", "status": "gone"},
        ):
            response = await host.call("session.search", **payload)
            assert not response.success and response.error_type == "invalid_payload", payload
        quoted = await host.call("session.search", query="%' OR 1=1 --")
        assert quoted.success and quoted.data == []
