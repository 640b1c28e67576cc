"""Skills through a whole chat turn: the agent's system prompt carries the skills block, the model
activates a skill through the tools slice, and the turn's outcome is recorded against the skill.

Real parts: the agent, session, tools and skills slices, SQLite files, and the loopback model
server over HTTP (``LoopbackGateway``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from refactorbot import IncomingMessage, MasterChat
from refactorbot.testing import ModelServer, Reply, host_running, loopback_config

PLUGINS = [
    "refactorbot_slice_skills.plugin",
    "refactorbot_slice_agent.plugin",
    "refactorbot_slice_session.plugin",
    "refactorbot_slice_tools.plugin",
    "refactorbot.testing.loopback",
]
QUIET: dict[str, Any] = {"core": {"health_interval": 3600}, "slices": {"skills": {"rescan_interval": 0}}}


@pytest.fixture(autouse=True)
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point HOME at an empty folder, so ``~/.agents/skills`` is the test's, never the developer's."""
    (tmp_path / "user-home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))


def write_skill(root: Path, name: str, description: str, body: str, extra: str = "") -> None:
    (root / name).mkdir(parents=True)
    (root / name / "SKILL.md").write_text(f"---\nname: {name}\ndescription: {description}\n{extra}---\n{body}\n")


@pytest.mark.asyncio
async def test_a_turn_lists_skills_activates_one_and_records_its_outcome(tmp_path: Path) -> None:
    skills = tmp_path / "skills"
    write_skill(
        skills, "release-notes", "Write release notes from a list of changes.", "Group changes as Added, Fixed."
    )
    write_skill(skills, "house-style", "The house writing style.", "Write in short sentences.", "always: true\n")
    write_skill(skills, "tweet", "Write a tweet.", "At most 280 characters.")
    with ModelServer() as server:
        server.script(
            Reply.tool_call("skill_activate", {"name": "release-notes"}),
            Reply.text("Added: skills. Fixed: nothing."),
        )
        config = {**QUIET, **loopback_config(server)}
        async with host_running(tmp_path, PLUGINS, config=config) as host:
            reply = await MasterChat(host).process_message(
                IncomingMessage(channel="cli", chat_id="c1", sender_id="ada", text="notes for 1.0 please, and $tweet")
            )
            assert reply.text == "Added: skills. Fixed: nothing.", reply.metadata
            first = server.requests[0]
            system = first["messages"][0]["content"]
            assert "<available_skills>" in system and "<name>release-notes</name>" in system
            assert "Write in short sentences." in system  # always loaded
            assert "At most 280 characters." in system  # $tweet
            assert "Group changes as Added, Fixed." not in system  # not activated yet
            tools = {t["function"]["name"]: t for t in first["tools"]}
            enum = tools["skill_activate"]["function"]["parameters"]["properties"]["name"]["enum"]
            assert enum == ["house-style", "release-notes", "tweet"]
            tool_result = server.requests[1]["messages"][-1]
            assert tool_result["role"] == "tool" and "Group changes as Added, Fixed." in tool_result["content"]
            listed = {s["name"]: s for s in (await host.call("skills.list")).data["skills"]}
            assert listed["release-notes"]["activations"] == 1 and listed["release-notes"]["successes"] == 1
            assert listed["house-style"]["successes"] == 1 and listed["tweet"]["successes"] == 1


@pytest.mark.asyncio
async def test_the_agent_runs_without_the_skills_slice(tmp_path: Path) -> None:
    with ModelServer() as server:
        server.script(Reply.text("plain answer"))
        config = {**QUIET, **loopback_config(server)}
        async with host_running(tmp_path, PLUGINS[1:], config=config) as host:
            reply = await MasterChat(host).process_message(
                IncomingMessage(channel="cli", chat_id="c1", sender_id="ada", text="hello $tweet")
            )
            assert reply.text == "plain answer"
            assert "<available_skills>" not in server.requests[0]["messages"][0]["content"]
