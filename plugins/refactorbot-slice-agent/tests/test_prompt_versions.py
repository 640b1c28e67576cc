"""Prompt versions: every version of a template, and rollback to one (runs use the rolled-back text)."""

from __future__ import annotations

import pytest
from refactorbot.testing import host_running, loopback_config
from refactorbot.testing.model_server import ModelServer, Reply

AGENT = "refactorbot_slice_agent.plugin"
LOOPBACK = "refactorbot.testing.loopback"


async def ok(host, target, **payload):
    response = await host.call(target, **payload)
    assert response.success, response.error_message
    return response.data


@pytest.mark.asyncio
async def test_versions_and_rollback(tmp_path):
    with ModelServer() as server:
        server.responder = lambda body: Reply.text("ok")
        config = {"core": {"health_interval": 3600}, **loopback_config(server)}
        async with host_running(tmp_path, [AGENT, LOOPBACK], config=config) as host:
            await ok(host, "agent.set_prompt", name="system", content="Version two. {date}", note="v2")
            await ok(host, "agent.set_prompt", name="system", content="Version three.", note="v3")
            versions = await ok(host, "agent.prompt_versions", name="system")
            assert [(v["version"], v["note"]) for v in versions] == [(3, "v3"), (2, "v2"), (1, "default")]

            back = await ok(host, "agent.rollback_prompt", name="system", version=2)
            assert (back["version"], back["content"], back["note"]) == (
                4,
                "Version two. {date}",
                "rollback to version 2",
            )
            assert (await ok(host, "agent.get_prompt", name="system"))["version"] == 4
            await ok(host, "agent.run", message="hi", mode="single")
            assert server.requests[-1]["messages"][0]["content"].startswith("Version two. 20")
            assert len(await ok(host, "agent.prompt_versions", name="system")) == 4

            missing = await host.call("agent.rollback_prompt", name="system", version=9)
            assert not missing.success and "no prompt 'system' version 9" in missing.error_message
            unknown = await host.call("agent.prompt_versions", name="nope")
            assert not unknown.success and unknown.error_message.startswith("no prompt 'nope' (known: ")
            bad = await host.call("agent.rollback_prompt", name="Bad Name", version=1)
            assert not bad.success and bad.error_type == "invalid_payload"
        async with host_running(tmp_path, [AGENT, LOOPBACK], config=config) as host:
            assert (await ok(host, "agent.get_prompt", name="system"))["content"] == "Version two. {date}"
