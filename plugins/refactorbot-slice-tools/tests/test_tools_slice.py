"""Behaviour of the tools slice in a real host: registry, validation, policy, limits and the log."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from refactorbot.testing import host_running, plugin_of
from refactorbot.tools import Tool, ToolContext, ToolResult
from tools_slice_samples import SAMPLE_TOOLS, Policy

SLICE = "refactorbot_slice_tools.plugin"
BASE = {"core": {"health_interval": 3600}}


def config(**tools: Any) -> dict[str, Any]:
    return {**BASE, "slices": {"tools": tools}} if tools else dict(BASE)


async def execute(host, tool: str, arguments: Any = None, **extra: Any) -> dict[str, Any]:
    response = await host.call("tools.execute", tool=tool, arguments={} if arguments is None else arguments, **extra)
    assert response.success, response.error_message
    return response.data


@pytest.mark.asyncio
async def test_list_offers_enabled_tools_in_openai_format(tmp_path: Path) -> None:
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS], config=config()) as host:
        listing = (await host.call("tools.list")).data
        names = [t["name"] for t in listing["tools"]]
        assert names == ["boom", "echo", "nap", "picky"]
        echo = next(t for t in listing["tools"] if t["name"] == "echo")
        assert echo["category"] == "sample" and echo["plugin"] == "sample-tools" and echo["enabled"]
        for schema in listing["schemas"]:
            assert schema["type"] == "function"
            assert re.match(r"^[a-zA-Z0-9_-]{1,64}$", schema["function"]["name"])
            assert schema["function"]["parameters"]["type"] == "object"
        sample = (await host.call("tools.list", category="sample")).data
        assert [t["name"] for t in sample["tools"]] == ["echo"]


@pytest.mark.asyncio
async def test_disable_and_enable_persist(tmp_path: Path) -> None:
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS], config=config()) as host:
        disabled = await host.call("tools.disable", name="echo")
        assert disabled.success and disabled.data["enabled"] is False
        listing = (await host.call("tools.list")).data
        assert "echo" not in [s["function"]["name"] for s in listing["schemas"]]
        assert "echo" not in [t["name"] for t in listing["tools"]]
        everything = (await host.call("tools.list", include_disabled=True)).data
        assert "echo" in [t["name"] for t in everything["tools"]]
        assert "echo" not in [s["function"]["name"] for s in everything["schemas"]]
        refused = await execute(host, "echo", {"text": "hi"})
        assert refused == {"ok": False, "output": "", "data": {}, "error": "tool 'echo' is disabled"}
        unknown = await host.call("tools.enable", name="ghost")
        assert not unknown.success and "unknown tool 'ghost'" in unknown.error_message
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS], config=config()) as host:
        assert (await execute(host, "echo", {"text": "hi"}))["error"] == "tool 'echo' is disabled"
        await host.call("tools.enable", name="echo")
        assert (await execute(host, "echo", {"text": "hi"}))["output"] == "hi"


@pytest.mark.asyncio
async def test_arguments_validated_before_running(tmp_path: Path) -> None:
    policy = Policy()
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS, policy.plugin()], config=config()) as host:
        bad = await execute(host, "echo", {"text": "", "count": 9, "extra": 1})
        assert bad["ok"] is False
        assert bad["error"].startswith("invalid arguments for echo: ")
        for field in ("text:", "count:", "extra:"):
            assert field in bad["error"]
        assert "\n" not in bad["error"]
        assert policy.before == []  # nothing ran, not even the policy hook
        as_text = await execute(host, "echo", '{"text": "ab", "count": 2}')
        assert as_text["ok"] and as_text["output"] == "abab"
        broken = await execute(host, "echo", '{"text": ')
        assert broken["error"].startswith("arguments for echo are not valid JSON")
        listed = await execute(host, "echo", "[1, 2]")
        assert listed["error"] == "arguments for echo must be a JSON object, not list"
        unknown = await execute(host, "nope")
        assert unknown["error"] == "unknown tool 'nope' (available: boom, echo, nap, picky)"


@pytest.mark.asyncio
async def test_policy_hooks_veto_and_observe(tmp_path: Path) -> None:
    policy = Policy()
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS, policy.plugin()], config=config()) as host:
        vetoed = await execute(host, "echo", {"text": "forbidden"})
        assert vetoed["error"] == "echo refused by policy: forbidden words are not allowed"
        broken = await execute(host, "echo", {"text": "explode"})
        assert broken["error"] == (
            "echo refused by policy: before_tool_call hook of policy raised RuntimeError: policy engine down"
        )
        fine = await execute(host, "echo", {"text": "fine"}, session_id="s1", user_id="u1", call_id="call_1")
        assert fine["ok"] and fine["output"] == "fine"
        assert policy.seen == [("echo", False), ("echo", False), ("echo", True)]
        assert policy.before[-1] == {"text": "fine", "count": 1, "api_token": None, "options": {}}


@pytest.mark.asyncio
async def test_failures_become_results_for_the_model(tmp_path: Path) -> None:
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS], config=config(timeouts={"nap": 0.2})) as host:
        crashed = await execute(host, "boom", {})
        assert crashed["ok"] is False and crashed["error"] == "boom failed: RuntimeError: kaboom"
        refused = await execute(host, "boom", {"seconds": 2})
        assert refused["error"] == "refused on purpose"
        wrong = await execute(host, "boom", {"seconds": 0.5})
        assert wrong["error"] == "boom returned str, not a ToolResult"
        slow = await execute(host, "nap", {"seconds": 5})
        assert slow["error"] == "nap timed out after 0.2s"
        quick = await execute(host, "nap", {"seconds": 0})
        assert quick["ok"]


@pytest.mark.asyncio
async def test_rate_limit_per_tool(tmp_path: Path) -> None:
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS], config=config(rate_limits={"echo": 2})) as host:
        results = [await execute(host, "echo", {"text": "x"}) for _ in range(3)]
        assert [r["ok"] for r in results] == [True, True, False]
        assert results[2]["error"] == "echo rate limit of 2 calls per minute exceeded; retry later"
        assert (await execute(host, "nap", {}))["ok"]  # other tools are not limited


@pytest.mark.asyncio
async def test_tool_configuration_and_failures_to_load(tmp_path: Path) -> None:
    settings = {**config(disabled=["nap"]), "tools": {"echo": {"prefix": ">> "}, "picky-section": {"fail": True}}}
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS], config=settings) as host:
        names = [t["name"] for t in (await host.call("tools.list", include_disabled=True)).data["tools"]]
        assert names == ["boom", "echo", "nap"]  # picky failed to load; the others are fine
        instance = host.instance("tools")
        assert instance.load_errors == {"picky": "ValueError: bad picky configuration"}
        health = await instance.health_check()
        assert health.status.value == "degraded" and health.message == "1 tool(s) failed to load: picky"
        assert (await execute(host, "echo", {"text": "hi"}))["output"] == ">> hi"
        assert (await execute(host, "nap", {}))["error"] == "tool 'nap' is disabled"
        echo = await execute(host, "echo", {"text": "where"})
        assert echo["data"]["workspace"] == str(tmp_path / "workspace")


@pytest.mark.asyncio
async def test_log_history_and_stats(tmp_path: Path) -> None:
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS], config=config(log_value_chars=20)) as host:
        secret = "sk-" + "a" * 30
        await execute(
            host, "echo", {"text": "x" * 100, "api_token": "hunter2", "options": {"password": "p"}}, session_id="s1"
        )
        await execute(host, "echo", {"text": f"key {secret}"}, session_id="s2", call_id="c2")
        await execute(host, "boom", {}, session_id="s1")
        history = (await host.call("tools.history")).data["executions"]
        assert [h["tool"] for h in history] == ["boom", "echo", "echo"]
        first = history[2]
        assert first["parameters"]["api_token"] == "***"
        assert first["parameters"]["options"] == {"password": "***"}
        assert first["parameters"]["text"] == "x" * 20 + "...[80 more chars]"
        assert secret not in json.dumps(history)
        assert history[1]["call_id"] == "c2" and history[1]["result"] == "key ***"
        assert history[0]["success"] is False and history[0]["error"] == "boom failed: RuntimeError: kaboom"
        only_s1 = (await host.call("tools.history", session_id="s1")).data["executions"]
        assert [h["tool"] for h in only_s1] == ["boom", "echo"]
        failures = (await host.call("tools.history", failures_only=True)).data["executions"]
        assert [h["tool"] for h in failures] == ["boom"]
        one_tool = (await host.call("tools.history", tool="echo", limit=1)).data["executions"]
        assert len(one_tool) == 1 and one_tool[0]["call_id"] == "c2"
        stats = (await host.call("tools.stats")).data
        usage = {u["tool"]: u for u in stats["tools"]}
        assert stats["total_calls"] == 3
        assert usage["echo"]["calls"] == 2 and usage["echo"]["errors"] == 0
        assert usage["boom"]["error_rate"] == 1.0
        assert usage["echo"]["p95_ms"] >= usage["echo"]["avg_ms"] * 0.5 > 0
        assert (await host.call("tools.stats", tool="boom")).data["total_calls"] == 1
    with sqlite3.connect(tmp_path / "slices" / "tools.db") as db:
        dump = "\n".join(str(row) for row in db.execute("SELECT * FROM tool_executions"))
        assert "hunter2" not in dump and secret not in dump
        tools = {row[0]: row for row in db.execute("SELECT name, schema, enabled, category FROM tools")}
        assert json.loads(tools["echo"][1])["function"]["name"] == "echo"


@pytest.mark.asyncio
async def test_files_tool_write_then_read_through_the_slice(tmp_path: Path) -> None:
    pytest.importorskip("refactorbot_tools_files")
    files = "refactorbot_tools_files.plugin"
    settings = {**config(workspace="work"), "tools": {"files": {"max_file_bytes": 1000}}}
    async with host_running(tmp_path, [SLICE, files], config=settings) as host:
        listing = (await host.call("tools.list")).data
        assert {s["function"]["name"] for s in listing["schemas"]} == {
            "files_read",
            "files_write",
            "files_replace",
            "files_list",
            "files_delete",
        }
        written = await execute(
            host, "files_write", {"path": "notes/todo.md", "content": "- ship it\n"}, session_id="s"
        )
        assert written["ok"], written
        assert (tmp_path / "work" / "notes" / "todo.md").read_text() == "- ship it\n"
        read = await execute(host, "files_read", {"path": "notes/todo.md"}, session_id="s")
        assert read["output"] == "- ship it\n"
        escape = await execute(host, "files_read", {"path": "../refactorbot.toml"}, session_id="s")
        assert escape == {
            "ok": False,
            "output": "",
            "data": {},
            "error": "'../refactorbot.toml': '..' is not allowed in paths",
        }
        too_big = await execute(host, "files_write", {"path": "big.txt", "content": "x" * 1001})
        assert too_big["error"] == "content is 1001 bytes, over the 1000-byte limit"
        history = (await host.call("tools.history", session_id="s")).data["executions"]
        assert [(h["tool"], h["success"]) for h in history] == [
            ("files_read", False),
            ("files_read", True),
            ("files_write", True),
        ]


@pytest.mark.asyncio
async def test_tool_sections_validated_with_env_overrides(tmp_path: Path) -> None:
    pytest.importorskip("refactorbot_tools_files")
    files = "refactorbot_tools_files.plugin"
    env = {"RB_FILES_MAX_FILE_BYTES": "5"}
    async with host_running(tmp_path / "a", [SLICE, files], config=config(), env=env) as host:
        refused = await execute(host, "files_write", {"path": "x.txt", "content": "123456"})
        assert refused["error"] == "content is 6 bytes, over the 5-byte limit"
        assert (await execute(host, "files_write", {"path": "x.txt", "content": "12345"}))["ok"]
        assert (tmp_path / "a" / "workspace" / "x.txt").read_text() == "12345"
    settings = {**config(), "tools": {"files": {"bogus": 1}}}
    async with host_running(tmp_path / "b", [SLICE, files], config=settings) as host:
        errors = host.instance("tools").load_errors
        assert sorted(errors) == ["files_delete", "files_list", "files_read", "files_replace", "files_write"]
        assert errors["files_read"] == "[tools.files]: bogus: Extra inputs are not permitted"
        assert (await host.call("tools.list")).data["tools"] == []


class _UnconfinedParams(BaseModel):
    text: str = ""


class _UnconfinedTool(Tool):
    """A tool that loads but says its environment is lacking (as exec_run does without a sandbox)."""

    name = "unconfined"
    description = "Runs without its sandbox."
    Params = _UnconfinedParams

    def warnings(self) -> list[str]:
        return ["no OS sandbox: bwrap not found; commands run with the policy checks only"]

    async def run(self, params: _UnconfinedParams, ctx: ToolContext) -> ToolResult:
        return ToolResult(output="ran")


@pytest.mark.asyncio
async def test_tool_warnings_make_the_slice_degraded(tmp_path: Path) -> None:
    warned = plugin_of(tools=[_UnconfinedTool], name="warned-tools")
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS, warned], config=config()) as host:
        health = await host.instance("tools").health_check()
        assert health.status.value == "degraded"
        assert health.message == "unconfined: no OS sandbox: bwrap not found; commands run with the policy checks only"
        assert health.details["warnings"] == [health.message]
        assert (await execute(host, "unconfined", {}))["output"] == "ran"  # it still runs
    async with host_running(tmp_path / "plain", [SLICE, SAMPLE_TOOLS], config=config()) as host:
        assert (await host.instance("tools").health_check()).status.value == "healthy"
