from __future__ import annotations

import asyncio
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
        "begin_turn": {"channel": "cli", "chat_id": "c1", "user_id": "alice", "content": "hi"},
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


@pytest.mark.asyncio
async def test_begin_turn_is_get_or_create_append_and_history_in_one_call(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        created, added = [], []

        async def on_created(event):
            created.append(event.payload)

        async def on_added(event):
            added.append(event.payload)

        host.bus.subscribe("session.created", on_created)
        host.bus.subscribe("session.message_added", on_added)
        first = await ok(host, "session.begin_turn", channel="cli", chat_id="c", user_id="u", content="hello")
        session = first["session"]
        assert session["created"] and session["user_id"] == "u" and session["message_count"] == 1
        assert first["message"]["role"] == "user" and first["message"]["content"] == "hello"
        assert first["message"]["tokens"] == message_tokens("hello")
        assert first["history"]["messages"] == [{"role": "user", "content": "hello"}]
        assert first["history"]["budget"] == 8192 - 1024 and first["history"]["dropped"] == 0
        sid = session["session_id"]
        await ok(host, "session.append", session_id=sid, role="assistant", content="hi there")

        second = await ok(host, "session.begin_turn", channel="cli", chat_id="c", user_id="u", content="again")
        assert second["session"]["session_id"] == sid and not second["session"]["created"]
        assert second["session"]["message_count"] == 3
        # the same history session.history gives after the append, with the new message last
        assert second["history"] == await ok(host, "session.history", session_id=sid)
        assert [m["content"] for m in second["history"]["messages"]] == ["hello", "hi there", "again"]
        got = await ok(host, "session.get", session_id=sid)
        assert got["message_count"] == 3 and got["token_count"] == second["history"]["tokens"]

        # the budget: explicit, or from the model's window, trimmed like history
        small = await ok(
            host, "session.begin_turn", channel="cli", chat_id="c", user_id="u", content="third", max_tokens=8
        )
        assert [m["content"] for m in small["history"]["messages"]] == ["third"] and small["history"]["dropped"] == 3
        assert small["history"] == await ok(host, "session.history", session_id=sid, max_tokens=8)

        for _ in range(100):
            if len(added) == 4 and created:
                break
            await asyncio.sleep(0.01)
        assert created == [{"session_id": sid, "user_id": "u"}]
        assert [(e["role"], e["session_id"]) for e in added] == [("user", sid), ("assistant", sid), ("user", sid)] + [
            ("user", sid)
        ]

        # an archived session's chat starts a new one
        await ok(host, "session.archive", session_id=sid)
        fresh = await ok(host, "session.begin_turn", channel="cli", chat_id="c", user_id="u", content="new")
        assert fresh["session"]["created"] and fresh["session"]["session_id"] != sid
        assert fresh["history"]["messages"] == [{"role": "user", "content": "new"}]

        long = "x" * 200_001
        refused = await host.call("session.begin_turn", channel="cli", chat_id="c", user_id="u", content=long)
        assert not refused.success and "the limit is 200000" in refused.error_message
        after = await ok(host, "session.get", session_id=fresh["session"]["session_id"])
        assert after["message_count"] == 1  # nothing stored by the refused turn


@pytest.mark.asyncio
async def test_concurrent_first_turns_of_a_chat_share_one_session(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        results = await asyncio.gather(
            *(host.call("session.get_or_create", channel="cli", chat_id="new", user_id="u") for _ in range(10)),
            *(
                host.call("session.begin_turn", channel="cli", chat_id="new", user_id="u", content=f"m{i}")
                for i in range(10)
            ),
        )
        assert all(r.success for r in results), [r.error_message for r in results if not r.success]
        ids = {r.data["session_id"] for r in results[:10]} | {r.data["session"]["session_id"] for r in results[10:]}
        assert len(ids) == 1
        created = [r.data for r in results[:10] if r.data["created"]]
        created += [r.data["session"] for r in results[10:] if r.data["session"]["created"]]
        assert len(created) == 1
        got = await ok(host, "session.get", session_id=ids.pop())
        assert got["message_count"] == 10


@pytest.mark.asyncio
async def test_history_of_an_unknown_session_is_an_error(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        missing = await host.call("session.history", session_id="nope")
        assert not missing.success and "no session 'nope'" in missing.error_message
        extended = await host.call("session.extend", session_id="nope", messages=[{"role": "user", "content": "x"}])
        assert not extended.success and "no session 'nope'" in extended.error_message
