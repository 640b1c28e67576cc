"""The operator's memory operations: users, update and find (every user's memories)."""

from __future__ import annotations

import pytest
from refactorbot.testing import host_running

PLUGIN = "refactorbot_slice_memory.plugin"
CONFIG = {"core": {"health_interval": 3600}}


async def ok(host, target, **payload):
    response = await host.call(target, **payload)
    assert response.success, response.error_message
    return response.data


@pytest.mark.asyncio
async def test_users_update_and_find(tmp_path):
    async with host_running(tmp_path, [PLUGIN], config=CONFIG) as host:
        tea = await ok(host, "memory.remember", user_id="alice", content="Alice likes green tea", tags=["drinks"])
        await ok(host, "memory.remember", user_id="alice", content="Alice lives in Lyon")
        await ok(host, "memory.remember", user_id="bob", content="Bob drinks black tea")

        users = await ok(host, "memory.users")
        assert [(u["user_id"], u["memories"]) for u in users] == [("bob", 1), ("alice", 2)]
        assert [u["user_id"] for u in await ok(host, "memory.users", query="ALI")] == ["alice"]

        found = await ok(host, "memory.find", query="tea")
        assert {m["user_id"] for m in found["memories"]} == {"alice", "bob"}
        assert all(m["access_count"] == 0 for m in found["memories"])  # find is not a recall
        only_bob = await ok(host, "memory.find", query="tea", user_id="bob")
        assert [m["content"] for m in only_bob["memories"]] == ["Bob drinks black tea"]
        newest = await ok(host, "memory.find", limit=2)
        assert [m["content"] for m in newest["memories"]] == ["Bob drinks black tea", "Alice lives in Lyon"]

        edited = await ok(
            host,
            "memory.update",
            user_id="alice",
            memory_id=tea["id"],
            content="Alice prefers coffee",
            importance=0.9,
            tags=["Drinks", "morning"],
        )
        assert (edited["content"], edited["importance"], edited["tags"]) == (
            "Alice prefers coffee",
            0.9,
            ["drinks", "morning"],
        )
        assert edited["kind"] == "fact"
        # the full-text index follows the edit
        assert (await ok(host, "memory.find", query="green"))["memories"] == []
        hits = await ok(host, "memory.search", user_id="alice", query="coffee")
        assert [m["id"] for m in hits["memories"]] == [tea["id"]]
        kind_only = await ok(host, "memory.update", user_id="alice", memory_id=tea["id"], kind="preference")
        assert (kind_only["kind"], kind_only["tags"], kind_only["content"]) == (
            "preference",
            ["drinks", "morning"],
            "Alice prefers coffee",
        )

        refused = await host.call("memory.update", user_id="bob", memory_id=tea["id"], content="stolen")
        assert not refused.success and refused.error_message == f"no memory {tea['id']} of user 'bob'"
        refused = await host.call("memory.update", user_id="alice", memory_id=tea["id"])
        assert not refused.success and "nothing to change" in refused.error_message
        refused = await host.call("memory.update", user_id="alice", memory_id=tea["id"], content="   ")
        assert not refused.success and refused.error_message == "memory content is empty"
        refused = await host.call("memory.update", user_id="alice", memory_id=tea["id"], content="x" * 4001)
        assert not refused.success and "the limit is 4000" in refused.error_message
        refused = await host.call("memory.update", user_id="alice", memory_id=tea["id"], tags=["x" * 65])
        assert not refused.success and refused.error_type == "invalid_payload"
        quoted = await ok(host, "memory.find", query='" OR * NEAR(')
        assert quoted["memories"] == []
