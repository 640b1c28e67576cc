"""``before_tool_call`` follows the one veto convention: ``None`` allows, a non-empty string refuses
with that reason, and a hook that returns anything else or raises refuses, naming its plugin."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from refactorbot import ToolCall
from refactorbot.testing import host_running, plugin_of
from tools_slice_samples import SAMPLE_TOOLS

SLICE = "refactorbot_slice_tools.plugin"
QUIET = {"core": {"health_interval": 3600}}
CONVENTION = "a veto hook returns None to allow or a non-empty reason string to refuse"


async def execute(host: Any, text: str) -> dict[str, Any]:
    response = await host.call("tools.execute", tool="echo", arguments={"text": text})
    assert response.success, response.error_message
    data: dict[str, Any] = response.data
    return data


def logged(home: Path) -> list[tuple[str, int, str | None]]:
    with sqlite3.connect(home / "slices" / "tools.db") as db:
        return db.execute("SELECT tool, success, error FROM tool_executions ORDER BY id").fetchall()


@pytest.mark.asyncio
@pytest.mark.parametrize("asynchronous", [False, True], ids=["def", "async def"])
async def test_a_reason_refuses_and_none_allows(tmp_path: Path, asynchronous: bool) -> None:
    def decide(call: ToolCall) -> str | None:
        return "no shouting" if call.arguments["text"].isupper() else None

    async def before_tool_call(call: ToolCall) -> str | None:
        return decide(call)

    policy = plugin_of(hooks={"before_tool_call": before_tool_call if asynchronous else decide}, name="policy")
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS, policy], config=QUIET) as host:
        refused = await execute(host, "HELLO")
        allowed = await execute(host, "hello")
    assert refused == {"ok": False, "output": "", "data": {}, "error": "echo refused by policy: no shouting"}
    assert allowed["ok"] and allowed["output"] == "hello"
    assert logged(tmp_path) == [("echo", 0, "echo refused by policy: no shouting"), ("echo", 1, None)]


WRONG = [(True, "bool True"), (False, "bool False"), ("", "str ''"), (1, "int 1"), (["no"], "list ['no']")]


@pytest.mark.asyncio
@pytest.mark.parametrize(("returned", "shown"), WRONG, ids=[shown for _, shown in WRONG])
async def test_a_return_of_the_wrong_type_refuses_with_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, returned: Any, shown: str
) -> None:
    policy = plugin_of(hooks={"before_tool_call": lambda call: returned}, name="sloppy")
    caplog.set_level(logging.ERROR, logger="refactorbot.plugins")
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS, policy], config=QUIET) as host:
        refused = await execute(host, "hello")
    expected = f"before_tool_call hook of sloppy returned {shown}; {CONVENTION}"
    assert refused["ok"] is False and refused["output"] == ""  # the tool never ran
    assert refused["error"] == f"echo refused by policy: {expected}"
    assert expected in [r.getMessage() for r in caplog.records]


@pytest.mark.asyncio
async def test_a_hook_that_raises_refuses_naming_its_plugin(tmp_path: Path) -> None:
    def before_tool_call(call: ToolCall) -> None:
        raise TimeoutError("the policy server did not answer")

    policy = plugin_of(hooks=[before_tool_call], name="remote-policy")
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS, policy], config=QUIET) as host:
        refused = await execute(host, "hello")
    assert refused["error"] == (
        "echo refused by policy: before_tool_call hook of remote-policy raised TimeoutError:"
        " the policy server did not answer"
    )
