from __future__ import annotations

import time

import pytest
from refactorbot.testing import SliceContract, host_running, loopback_config
from refactorbot.testing.model_server import ModelServer, Reply
from refactorbot_slice_memory.query import match_expression, terms
from refactorbot_slice_memory.slice import MemorySlice

PLUGIN = "refactorbot_slice_memory.plugin"
LOOPBACK = "refactorbot.testing.loopback"
CONFIG = {"core": {"health_interval": 3600}}

INJECTIONS = [
    '"',
    '""',
    '"unterminated',
    "NEAR(",
    "a AND",
    "OR OR OR",
    "NOT",
    "*",
    "name*",
    "^start",
    "col:value",
    "user_id:bob",
    'user_id : "bob"',
    "content:secret OR user_id:bob",
    "(((",
    ")",
    "a + b",
    "{content user_id}: x",
    "'; DROP TABLE memories; --",
    "\x00",
    "NEAR(a b, 5)",
    "- -- ---",
    "\\",
    "💥 emoji ✓",
    "a" * 1999,
]


class TestMemoryContract(SliceContract):
    slice_class = MemorySlice
    plugin = PLUGIN
    valid_payloads = {
        "remember": {"user_id": "alice", "content": "likes tea", "tags": ["Drinks"]},
        "search": {"user_id": "alice", "query": "tea"},
        "stats": {},
        "prune": {"older_than_days": 10},
    }
    invalid_payloads = {
        "remember": [
            {"user_id": "", "content": "x"},
            {"user_id": "a", "content": ""},
            {"user_id": "a", "content": "x", "tags": [""]},
        ],
        "search": [{"query": "tea"}, {"user_id": "a", "limit": 0}, {"user_id": "a", "limit": 1000}],
    }


async def ok(host, target, **payload):
    response = await host.call(target, **payload)
    assert response.success, response.error_message
    return response.data


def test_match_expression_quotes_every_term():
    assert terms("What is my NAME?") == ["name"]
    assert terms("is it") == ["is", "it"]
    assert match_expression("", "u") is None
    assert match_expression("!!!", "u") is None
    assert match_expression('tea" OR user_id:bob', "alice") == 'user_id : "alice" AND ("tea" OR "user_id" OR "bob")'
    assert match_expression("tea", 'we"ird') == 'user_id : "we""ird" AND ("tea")'
    assert match_expression("tea", "!!!") == '"tea"'


@pytest.mark.asyncio
async def test_search_ranks_by_relevance_and_counts_access(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        await ok(host, "memory.remember", user_id="alice", content="Alice's favourite drink is green tea")
        await ok(host, "memory.remember", user_id="alice", content="Alice works on a SQLite project")
        await ok(host, "memory.remember", user_id="alice", content="tea tea tea: Alice drinks tea every morning")
        found = await ok(host, "memory.search", user_id="alice", query="what tea does she drink?")
        contents = [m["content"] for m in found["memories"]]
        assert contents[0].startswith("tea tea tea") and len(contents) == 2
        assert all(m["access_count"] == 1 and m["last_accessed"] for m in found["memories"])
        again = await ok(host, "memory.search", user_id="alice", query="tea", touch=False)
        assert [m["access_count"] for m in again["memories"]] == [1, 1]
        stemmed = await ok(host, "memory.search", user_id="alice", query="projects")
        assert [m["content"] for m in stemmed["memories"]] == ["Alice works on a SQLite project"]
        newest = await ok(host, "memory.search", user_id="alice", query="", limit=1)
        assert newest["memories"][0]["content"].startswith("tea tea tea") and newest["query"] == ""


@pytest.mark.asyncio
async def test_users_never_see_each_others_memories(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        await ok(host, "memory.remember", user_id="alice", content="the launch code is 1234")
        await ok(host, "memory.remember", user_id="bob", content="bob's launch code is 9999")
        await ok(host, "memory.remember", user_id="alice bob", content="shared launch code 5555")
        for query in ("launch code", "", "bob", "9999", 'user_id:"bob" OR code', "alice bob"):
            alice = await ok(host, "memory.search", user_id="alice", query=query)
            assert {m["user_id"] for m in alice["memories"]} <= {"alice"}, query
            assert all("9999" not in m["content"] and "5555" not in m["content"] for m in alice["memories"])
        bob = await ok(host, "memory.search", user_id="bob", query="launch code")
        assert [m["content"] for m in bob["memories"]] == ["bob's launch code is 9999"]
        denied = await ok(host, "memory.forget", user_id="bob", memory_id=1)
        assert denied == {"forgotten": 0}
        assert (await ok(host, "memory.search", user_id="alice", query="1234"))["memories"]


@pytest.mark.asyncio
async def test_fts_injection_strings_are_harmless(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        await ok(host, "memory.remember", user_id="alice", content="secret plans for NEAR term")
        await ok(host, "memory.remember", user_id="bob", content="bob secret content")
        for text in INJECTIONS:
            response = await host.call("memory.search", user_id="alice", query=text)
            assert response.success, (text, response.error_message)
            assert all(m["user_id"] == "alice" for m in response.data["memories"]), text
            stored = await host.call("memory.remember", user_id="alice", content=text + " x")
            assert stored.success, (text, stored.error_message)
        count = await host.instance("memory").db.scalar("SELECT COUNT(*) FROM memories")
        assert count == 2 + len(INJECTIONS)


@pytest.mark.asyncio
async def test_tags_dedupe_forget_and_stats(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        a = await ok(
            host, "memory.remember", user_id="u", content="uses vim", tags=["Editor", "tools"], session_id="s1"
        )
        b = await ok(host, "memory.remember", user_id="u", content="uses vim", tags=["habit"], importance=0.9)
        assert a["id"] == b["id"] and b["tags"] == ["editor", "habit", "tools"] and b["importance"] == 0.9
        await ok(host, "memory.remember", user_id="u", content="uses tmux", tags=["tools"])
        tagged = await ok(host, "memory.search", user_id="u", query="uses", tags=["tools", "editor"])
        assert [m["content"] for m in tagged["memories"]] == ["uses vim"]
        in_session = await ok(host, "memory.search", user_id="u", session_id="s1")
        assert [m["content"] for m in in_session["memories"]] == ["uses vim"]
        stats = await ok(host, "memory.stats", user_id="u")
        assert stats["memories"] == 2 and stats["top_tags"]["tools"] == 2 and stats["by_kind"] == {"fact": 2}
        refused = await host.call("memory.forget", user_id="u")
        assert not refused.success and "everything=true" in refused.error_message
        assert await ok(host, "memory.forget", user_id="u", session_id="s1") == {"forgotten": 1}
        assert await ok(host, "memory.forget", user_id="u", everything=True) == {"forgotten": 1}
        tags_left = await host.instance("memory").db.scalar("SELECT COUNT(*) FROM memory_tags")
        fts_left = await host.instance("memory").db.scalar(
            "SELECT COUNT(*) FROM memories_fts WHERE memories_fts MATCH 'uses'"
        )
        assert tags_left == 0 and fts_left == 0


@pytest.mark.asyncio
async def test_prune_and_cap(tmp_path):
    config = {**CONFIG, "slices": {"memory": {"max_per_user": 3}}}
    async with host_running(tmp_path, [PLUGIN], config=config) as host:
        for i in range(5):
            await ok(host, "memory.remember", user_id="u", content=f"fact {i}")
        left = await ok(host, "memory.search", user_id="u", limit=10, touch=False)
        assert [m["content"] for m in left["memories"]] == ["fact 4", "fact 3", "fact 2"]
        await ok(host, "memory.search", user_id="u", query="4")
        db = host.instance("memory").db
        await db.execute("UPDATE memories SET created_at = ?", (time.time() - 100 * 86400,))
        refused = await host.call("memory.prune")
        assert not refused.success and "retention" in refused.error_message
        pruned = await ok(host, "memory.prune", older_than_days=90)
        assert pruned == {"pruned": 2}
        survivors = await ok(host, "memory.search", user_id="u", limit=10, touch=False)
        assert [m["content"] for m in survivors["memories"]] == ["fact 4"]


async def _old_memories(host, user_id, n):
    for i in range(n):
        await ok(host, "memory.remember", user_id=user_id, content=f"{user_id} note {i}: likes topic {i}")
    await host.instance("memory").db.execute(
        "UPDATE memories SET created_at = ? WHERE user_id = ?", (time.time() - 60 * 86400, user_id)
    )


@pytest.mark.asyncio
async def test_consolidate_through_the_llm(tmp_path):
    with ModelServer() as server:
        server.script(Reply.text("Carol likes topics 0 to 3."))
        config = {**CONFIG, **loopback_config(server)}
        async with host_running(tmp_path, [PLUGIN, LOOPBACK], config=config) as host:
            await _old_memories(host, "carol", 4)
            await _old_memories(host, "dave", 4)
            result = await ok(host, "memory.consolidate", user_id="carol")
            assert result["consolidated"] and result["summary"]["content"] == "Carol likes topics 0 to 3."
            assert result["summary"]["kind"] == "summary" and result["summary"]["tags"] == ["consolidated"]
            assert len(result["source_ids"]) == 4
            prompt = server.requests[-1]["messages"][1]["content"]
            assert "carol note 3" in prompt and "dave" not in prompt
            found = await ok(host, "memory.search", user_id="carol", query="topics likes")
            assert [m["kind"] for m in found["memories"]] == ["summary"]
            everything = await ok(
                host, "memory.search", user_id="carol", query="likes", include_consolidated=True, limit=10
            )
            assert len(everything["memories"]) == 5
            db = host.instance("memory").db
            sources = await db.fetchall("SELECT source_id FROM memory_consolidation ORDER BY source_id")
            assert [r[0] for r in sources] == result["source_ids"]
            again = await ok(host, "memory.consolidate", user_id="carol")
            assert not again["consolidated"] and "at least" in again["reason"]


@pytest.mark.asyncio
async def test_consolidate_degrades_without_gateway(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        await _old_memories(host, "erin", 3)
        result = await ok(host, "memory.consolidate", user_id="erin")
        assert not result["consolidated"] and "no LLM gateway" in result["reason"]
        still = await ok(host, "memory.search", user_id="erin", query="likes", limit=10)
        assert len(still["memories"]) == 3
