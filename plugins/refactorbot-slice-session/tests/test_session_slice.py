from __future__ import annotations

import time

import pytest
from refactorbot.testing import SliceContract, host_running
from refactorbot_slice_session.slice import SessionSlice, trim_to_budget
from refactorbot_slice_session.tokens import estimate_tokens, message_tokens

PLUGIN = "refactorbot_slice_session.plugin"
CONFIG = {"core": {"health_interval": 3600}}


class TestSessionContract(SliceContract):
    slice_class = SessionSlice
    plugin = PLUGIN
    valid_payloads = {
        "get_or_create": {"channel": "cli", "chat_id": "c1", "user_id": "alice"},
        "list": {},
        "archive_idle": {"idle_days": 1},
        "stats": {},
    }
    invalid_payloads = {
        "get_or_create": [{"channel": "", "chat_id": "c", "user_id": "u"}, {"channel": "c", "chat_id": "c"}],
        "append": [{"session_id": "s", "role": "robot", "content": "x"}],
        "history": [{"session_id": "s", "max_tokens": 0}],
    }


async def ok(host, target, **payload):
    response = await host.call(target, **payload)
    assert response.success, response.error_message
    return response.data


def test_token_estimate():
    assert estimate_tokens("") == 1
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert message_tokens("a" * 400) == 104
    assert message_tokens("", [{"id": "1"}]) > message_tokens("")


@pytest.mark.asyncio
async def test_one_active_session_per_chat(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        first = await ok(host, "session.get_or_create", channel="cli", chat_id="c1", user_id="alice")
        again = await ok(host, "session.get_or_create", channel="cli", chat_id="c1", user_id="alice")
        other = await ok(host, "session.get_or_create", channel="telegram", chat_id="c1", user_id="alice")
        assert first["created"] and not again["created"]
        assert first["session_id"] == again["session_id"] != other["session_id"]
        await ok(host, "session.archive", session_id=first["session_id"])
        fresh = await ok(host, "session.get_or_create", channel="cli", chat_id="c1", user_id="alice")
        assert fresh["created"] and fresh["session_id"] != first["session_id"]
        refused = await host.call("session.append", session_id=first["session_id"], role="user", content="hi")
        assert not refused.success and "archived" in refused.error_message


@pytest.mark.asyncio
async def test_append_counts_tokens_and_publishes(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        seen = []

        async def on_added(event):
            seen.append(event.payload)

        host.bus.subscribe("session.message_added", on_added)
        s = await ok(host, "session.get_or_create", channel="cli", chat_id="c", user_id="u")
        m = await ok(host, "session.append", session_id=s["session_id"], role="user", content="x" * 40)
        assert m["tokens"] == message_tokens("x" * 40)
        calls = [{"id": "c1", "type": "function", "function": {"name": "files_read", "arguments": "{}"}}]
        await ok(host, "session.append", session_id=s["session_id"], role="assistant", content="", tool_calls=calls)
        await ok(host, "session.append", session_id=s["session_id"], role="tool", content="data", tool_call_id="c1")
        got = await ok(host, "session.get", session_id=s["session_id"])
        assert got["message_count"] == 3
        assert got["token_count"] == m["tokens"] + message_tokens("", calls) + message_tokens("data")
        history = await ok(host, "session.history", session_id=s["session_id"])
        assert history["messages"][1]["tool_calls"] == calls
        assert history["messages"][2] == {"role": "tool", "content": "data", "tool_call_id": "c1"}
        for _ in range(50):
            if len(seen) == 3:
                break
            await __import__("asyncio").sleep(0.01)
        assert [e["role"] for e in seen] == ["user", "assistant", "tool"]
        bad = await host.call("session.append", session_id=s["session_id"], role="user", content="x", tool_calls=calls)
        assert not bad.success and "assistant" in bad.error_message
        missing = await host.call("session.append", session_id="nope", role="user", content="x")
        assert not missing.success and "no session 'nope'" in missing.error_message


@pytest.mark.asyncio
async def test_history_trimmed_to_budget_keeps_system_and_newest(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        s = await ok(host, "session.get_or_create", channel="cli", chat_id="c", user_id="u")
        sid = s["session_id"]
        await ok(host, "session.append", session_id=sid, role="system", content="be brief")
        for i in range(30):
            await ok(
                host,
                "session.append",
                session_id=sid,
                role="user" if i % 2 == 0 else "assistant",
                content=f"turn {i} " + "w" * 36,
            )
        per = message_tokens("turn 10 " + "w" * 36)
        budget = message_tokens("be brief") + 5 * per
        history = await ok(host, "session.history", session_id=sid, max_tokens=budget)
        contents = [m["content"] for m in history["messages"]]
        assert contents[0] == "be brief"
        assert [c.split()[1] for c in contents[1:]] == ["25", "26", "27", "28", "29"]
        assert history["tokens"] <= budget and history["dropped"] == 25
        full = await ok(host, "session.history", session_id=sid)
        assert len(full["messages"]) == 31 and full["budget"] == 8192 - 1024


def test_trim_drops_orphan_tool_messages():
    rows = [
        ({"role": "user", "content": "a"}, 10),
        ({"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}, 10),
        ({"role": "tool", "content": "r", "tool_call_id": "1"}, 10),
        ({"role": "assistant", "content": "done"}, 10),
    ]
    messages, tokens, dropped = trim_to_budget(rows, 20)
    assert [m["role"] for m in messages] == ["assistant"]
    assert tokens == 10 and dropped == 3


@pytest.mark.asyncio
async def test_model_context_window_sets_budget(tmp_path):
    config = {**CONFIG, "slices": {"session": {"context_windows": {"tiny": 300}, "reserve_tokens": 100}}}
    async with host_running(tmp_path, [PLUGIN], config=config) as host:
        s = await ok(host, "session.get_or_create", channel="cli", chat_id="c", user_id="u")
        for _ in range(10):
            await ok(host, "session.append", session_id=s["session_id"], role="user", content="y" * 160)
        history = await ok(host, "session.history", session_id=s["session_id"], model="tiny")
        assert history["budget"] == 200
        assert len(history["messages"]) == 200 // message_tokens("y" * 160)


@pytest.mark.asyncio
async def test_archive_idle_and_list_and_stats(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        old = await ok(host, "session.get_or_create", channel="cli", chat_id="old", user_id="alice")
        new = await ok(host, "session.get_or_create", channel="cli", chat_id="new", user_id="bob")
        await ok(host, "session.append", session_id=new["session_id"], role="user", content="hello")
        await ok(host, "session.append", session_id=new["session_id"], role="assistant", content="hi", duration_ms=12.5)
        instance = host.instance("session")
        await instance.db.execute(
            "UPDATE sessions SET updated_at = ? WHERE id = ?", (time.time() - 40 * 86400, old["session_id"])
        )
        result = await ok(host, "session.archive_idle")
        assert result == {"archived": 1, "session_ids": [old["session_id"]]}
        active = await ok(host, "session.list", status="active")
        assert [s["session_id"] for s in active] == [new["session_id"]]
        mine = await ok(host, "session.list", user_id="alice")
        assert [s["status"] for s in mine] == ["archived"]
        stats = await ok(host, "session.stats", session_id=new["session_id"])
        assert stats["messages"] == 2 and stats["by_role"] == {"user": 1, "assistant": 1}
        assert stats["mean_response_ms"] == 12.5
        overall = await ok(host, "session.stats")
        assert overall["sessions"] == 2 and overall["archived"] == 1 and overall["active"] == 1


@pytest.mark.asyncio
async def test_oversized_message_refused(tmp_path):
    config = {**CONFIG, "slices": {"session": {"max_content_chars": 10}}}
    async with host_running(tmp_path, [PLUGIN], config=config) as host:
        s = await ok(host, "session.get_or_create", channel="cli", chat_id="c", user_id="u")
        r = await host.call("session.append", session_id=s["session_id"], role="user", content="z" * 11)
        assert not r.success and "limit is 10" in r.error_message


@pytest.mark.asyncio
async def test_idle_sessions_archived_at_start(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        s = await ok(host, "session.get_or_create", channel="cli", chat_id="c", user_id="u")
        await host.instance("session").db.execute(
            "UPDATE sessions SET updated_at = ? WHERE id = ?", (time.time() - 31 * 86400, s["session_id"])
        )
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        assert (await ok(host, "session.get", session_id=s["session_id"]))["status"] == "archived"
    off = {**CONFIG, "slices": {"session": {"archive_on_start": False, "archive_after_days": 1}}}
    async with host_running(tmp_path, [PLUGIN], config=off) as host:
        fresh = await ok(host, "session.get_or_create", channel="cli", chat_id="c", user_id="u")
        await host.instance("session").db.execute(
            "UPDATE sessions SET updated_at = ? WHERE id = ?", (time.time() - 2 * 86400, fresh["session_id"])
        )
    async with host_running(tmp_path, [PLUGIN], config=off) as host:
        assert (await ok(host, "session.get", session_id=fresh["session_id"]))["status"] == "active"


@pytest.mark.asyncio
async def test_extend_adds_a_turn_atomically(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        s = await ok(host, "session.get_or_create", channel="cli", chat_id="c", user_id="u")
        calls = [{"id": "c1", "type": "function", "function": {"name": "files_read", "arguments": "{}"}}]
        turn = [
            {"role": "assistant", "content": "", "tool_calls": calls},
            {"role": "tool", "content": "body", "tool_call_id": "c1"},
            {"role": "assistant", "content": "done", "duration_ms": 3.5},
        ]
        added = await ok(host, "session.extend", session_id=s["session_id"], messages=turn)
        assert [m["role"] for m in added] == ["assistant", "tool", "assistant"] and added[2]["duration_ms"] == 3.5
        bad = [*turn, {"role": "user", "content": "x", "tool_calls": calls}]
        refused = await host.call("session.extend", session_id=s["session_id"], messages=bad)
        assert not refused.success and "only assistant" in refused.error_message
        got = await ok(host, "session.get", session_id=s["session_id"])
        assert got["message_count"] == 3 and got["token_count"] == sum(m["tokens"] for m in added)
        empty = await host.call("session.extend", session_id=s["session_id"], messages=[])
        assert not empty.success and empty.error_type == "invalid_payload"
