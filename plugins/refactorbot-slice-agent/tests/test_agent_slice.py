from __future__ import annotations

import pytest
from agent_fixtures import tools_plugin
from refactorbot.testing import SliceContract, host_running, loopback_config
from refactorbot.testing.model_server import ModelServer, Reply
from refactorbot_slice_agent.loop import choose_mode
from refactorbot_slice_agent.slice import AgentSlice

AGENT = "refactorbot_slice_agent.plugin"
#: The kit's LoopbackGateway: real HTTP to the scripted ModelServer.
LOOPBACK = "refactorbot.testing.loopback"
SESSION = "refactorbot_slice_session.plugin"
MEMORY = "refactorbot_slice_memory.plugin"


def config_for(server, **agent):
    return {
        "core": {"health_interval": 3600},
        **loopback_config(server),
        "slices": {"agent": agent} if agent else {},
    }


class TestAgentContract(SliceContract):
    slice_class = AgentSlice
    plugin = AGENT
    valid_payloads = {"list_prompts": {}, "executions": {"limit": 5}, "get_prompt": {"name": "system"}}
    invalid_payloads = {
        "run": [{"message": ""}, {"message": "hi", "mode": "three_phase"}, {"message": "hi", "max_steps": 0}],
        "set_prompt": [{"name": "Bad Name", "content": "x"}, {"name": "system", "content": ""}],
    }


async def run(host, **payload):
    response = await host.call("agent.run", **payload)
    assert response.success, response.error_message
    return response.data


@pytest.mark.asyncio
async def test_tool_call_then_answer(tmp_path):
    with ModelServer() as server:
        server.script(
            Reply.tool_call("files_write", {"path": "a.txt", "content": "hello"}),
            Reply.tool_call("files_read", {"path": "a.txt"}),
            Reply.text("<think>the file says hello</think>The file a.txt contains: hello"),
        )
        async with host_running(tmp_path, [AGENT, LOOPBACK, tools_plugin], config=config_for(server)) as host:
            result = await run(host, message="write hello to a.txt and read it back", user_id="u1", session_id="s1")
            assert result["answer"] == "The file a.txt contains: hello"
            assert [c["tool"] for c in result["tool_calls"]] == ["files_write", "files_read"]
            assert all(c["ok"] for c in result["tool_calls"]) and result["tool_calls"][1]["output"] == "hello"
            assert result["steps"] == 3 and result["mode"] == "single" and result["success"]
            assert result["tokens"]["total_tokens"] > 0
            assert (tmp_path / "workspace" / "a.txt").read_text() == "hello"
            log = host.instance("tools").log_entries
            assert log[0]["session_id"] == "s1" and log[0]["user_id"] == "u1" and log[0]["call_id"]
            # what the model saw: tool schemas, then the tool results in OpenAI format
            assert {t["function"]["name"] for t in server.requests[0]["tools"]} == {"files_write", "files_read"}
            third = server.requests[2]["messages"]
            assert [m["role"] for m in third[-4:]] == ["assistant", "tool", "assistant", "tool"]
            assert third[-1]["content"] == "hello" and third[-1]["tool_call_id"] == third[-2]["tool_calls"][0]["id"]
            roles = [m["role"] for m in result["messages"]]
            assert roles == ["assistant", "tool", "assistant", "tool", "assistant"]
            executions = (await host.call("agent.executions")).data
            assert executions[0]["request"].startswith("write hello") and executions[0]["steps"] == 3
            assert [c["tool"] for c in executions[0]["tool_calls"]] == ["files_write", "files_read"]


@pytest.mark.asyncio
async def test_tool_errors_go_back_to_the_model(tmp_path):
    with ModelServer() as server:
        server.script(Reply.tool_call("files_read", {"path": "missing.txt"}), Reply.text("There is no such file."))
        async with host_running(tmp_path, [AGENT, LOOPBACK, tools_plugin], config=config_for(server)) as host:
            result = await run(host, message="read missing.txt")
            assert result["tool_calls"][0]["ok"] is False and "no such file" in result["tool_calls"][0]["error"]
            assert server.requests[1]["messages"][-1]["content"] == "ERROR: no such file: missing.txt"
            assert result["answer"] == "There is no such file."


@pytest.mark.asyncio
async def test_step_limit_gives_a_clear_message(tmp_path):
    with ModelServer() as server:
        server.responder = lambda body: Reply.tool_call("files_read", {"path": "loop.txt"})
        config = config_for(server, max_steps=3)
        async with host_running(tmp_path, [AGENT, LOOPBACK, tools_plugin], config=config) as host:
            result = await run(host, message="loop forever")
            assert result["limit_hit"] == "steps" and not result["success"]
            assert "max_steps = 3" in result["answer"] and len(server.requests) == 3
            override = await run(host, message="loop again", max_steps=1)
            assert override["steps"] == 1 and "max_steps = 1" in override["answer"]


@pytest.mark.asyncio
async def test_token_limit(tmp_path):
    with ModelServer() as server:
        server.responder = lambda body: Reply.tool_call("files_read", {"path": "x"})
        config = config_for(server, max_run_tokens=100)
        async with host_running(tmp_path, [AGENT, LOOPBACK, tools_plugin], config=config) as host:
            result = await run(host, message="spend tokens")
            assert result["limit_hit"] == "tokens" and "max_run_tokens" in result["answer"]
            assert result["tokens"]["total_tokens"] > 100


@pytest.mark.asyncio
async def test_text_fallback_parser(tmp_path):
    with ModelServer() as server:
        server.script(
            Reply.text('I will write it.\nTOOL: files_write | PARAMS: {"path": "b.txt", "content": "from text"}'),
            Reply.text("TOOL: files_read | PARAMS: {not json}"),
            Reply.text("Done: b.txt holds 'from text'.\nREMEMBER: the user likes b.txt"),
        )
        config = config_for(server, native_tools=False)
        async with host_running(tmp_path, [AGENT, LOOPBACK, tools_plugin], config=config) as host:
            result = await run(host, message="write b.txt")
            assert (tmp_path / "workspace" / "b.txt").read_text() == "from text"
            assert "tools" not in server.requests[0]
            system = server.requests[0]["messages"][0]["content"]
            assert "TOOL: <tool name> | PARAMS:" in system and "- files_write: Write a file." in system
            second = server.requests[1]["messages"]
            assert second[-1]["role"] == "user" and second[-1]["content"].startswith("TOOL RESULT files_write:")
            assert "PARAMS is not valid JSON" in server.requests[2]["messages"][-1]["content"]
            assert result["answer"] == "Done: b.txt holds 'from text'."
            assert result["remember"] == ["the user likes b.txt"]


@pytest.mark.asyncio
async def test_native_model_answering_in_text_still_runs_tools(tmp_path):
    with ModelServer() as server:
        server.script(
            Reply.text('TOOL: files_write | PARAMS: {"path": "c.txt", "content": "c"}'),
            Reply.text("ok"),
        )
        async with host_running(tmp_path, [AGENT, LOOPBACK, tools_plugin], config=config_for(server)) as host:
            result = await run(host, message="write c")
            assert result["tool_calls"][0]["tool"] == "files_write" and (tmp_path / "workspace" / "c.txt").exists()


@pytest.mark.asyncio
async def test_two_phase_plans_then_executes(tmp_path):
    with ModelServer() as server:
        server.script(
            Reply.text("<think>hmm</think>1. Write plan.txt\n2. Answer"),
            Reply.tool_call("files_write", {"path": "plan.txt", "content": "done"}),
            Reply.text("Refactoring finished."),
        )
        config = config_for(server, planning_model="planner-model", execution_model="executor-model")
        async with host_running(tmp_path, [AGENT, LOOPBACK, tools_plugin], config=config) as host:
            result = await run(host, message="Please refactor the project")
            assert result["mode"] == "two_phase" and result["plan"] == "1. Write plan.txt\n2. Answer"
            assert [r["model"] for r in server.requests] == ["planner-model", "executor-model", "executor-model"]
            assert "tools" not in server.requests[0]
            assert "files_write" in server.requests[0]["messages"][0]["content"]
            assert "Plan to follow, step by step:\n1. Write plan.txt" in server.requests[1]["messages"][0]["content"]
            assert result["answer"] == "Refactoring finished." and result["steps"] == 3
            server.script(Reply.text("plain"))
            single = await run(host, message="Please refactor the project", mode="single", model="explicit")
            assert single["mode"] == "single" and server.requests[-1]["model"] == "explicit"


def test_choose_mode():
    assert choose_mode("hi there", 600) == "single"
    assert choose_mode("write a.txt", 600) == "single"
    assert choose_mode("Make a plan for the release", 600) == "two_phase"
    assert choose_mode("plan out the migration", 600) == "two_phase"
    assert choose_mode("save the plan to plan.txt", 600) == "single"
    assert choose_mode("refactor utils.py", 600) == "two_phase"
    assert choose_mode("x" * 600, 600) == "two_phase"
    assert choose_mode("do:\n1. a\n2. b\n3. c", 600) == "two_phase"


@pytest.mark.asyncio
async def test_context_has_history_memories_and_rules(tmp_path):
    # session and memory are this distribution's test siblings ([tool.refactorbot.test] in pyproject.toml)
    with ModelServer() as server:
        server.responder = lambda body: Reply.text("fine")
        config = config_for(server)
        (tmp_path / "workspace").mkdir()
        (tmp_path / "workspace" / "AGENTS.md").write_text("Always answer in French.")
        async with host_running(tmp_path, [AGENT, SESSION, MEMORY, LOOPBACK], config=config) as host:
            s = (await host.call("session.get_or_create", channel="cli", chat_id="c", user_id="ann")).data
            sid = s["session_id"]
            for role, content in (("user", "earlier question"), ("assistant", "earlier answer"), ("user", "new one")):
                await host.call("session.append", session_id=sid, role=role, content=content)
            await host.call("memory.remember", user_id="ann", content="Ann prefers tabs over spaces")
            await host.call("memory.remember", user_id="bob", content="Bob prefers spaces over tabs")
            await run(host, message="new one", session_id=sid, user_id="ann")
            messages = server.requests[-1]["messages"]
            system = messages[0]["content"]
            assert "Always answer in French." in system and "Project rules (AGENTS.md)" in system
            assert "Ann prefers tabs" in system and "Bob" not in system
            assert [(m["role"], m["content"]) for m in messages[1:]] == [
                ("user", "earlier question"),
                ("assistant", "earlier answer"),
                ("user", "new one"),
            ]
            await run(host, message="given", user_id="ann", memories=["custom memory"])
            assert "custom memory" in server.requests[-1]["messages"][0]["content"]
            assert "Ann prefers" not in server.requests[-1]["messages"][0]["content"]


@pytest.mark.asyncio
async def test_history_given_by_the_caller_is_used_instead_of_reading_it_again(tmp_path):
    with ModelServer() as server:
        server.responder = lambda body: Reply.text("fine")
        async with host_running(tmp_path, [AGENT, SESSION, LOOPBACK], config=config_for(server)) as host:
            start = (
                await host.call("session.begin_turn", channel="cli", chat_id="c", user_id="ann", content="first")
            ).data
            sid = start["session"]["session_id"]
            await host.call("session.append", session_id=sid, role="assistant", content="stored answer")
            start = (
                await host.call("session.begin_turn", channel="cli", chat_id="c", user_id="ann", content="second")
            ).data
            given = [{"role": "system", "content": "dropped"}, *start["history"]["messages"]]
            await run(host, message="second", session_id=sid, user_id="ann", history=given)
            assert [(m["role"], m["content"]) for m in server.requests[-1]["messages"][1:]] == [
                ("user", "first"),
                ("assistant", "stored answer"),
                ("user", "second"),
            ]
            assert "session.history" not in host.metrics.snapshot("session")  # not read again
            # what is given is what the model sees: the caller read it for this run
            await run(host, message="third", session_id=sid, user_id="ann", history=[])
            assert [m["content"] for m in server.requests[-1]["messages"][1:]] == ["third"]
            assert "session.history" not in host.metrics.snapshot("session")


@pytest.mark.asyncio
async def test_an_agent_with_its_own_history_budget_reads_the_history_itself(tmp_path):
    with ModelServer() as server:
        server.responder = lambda body: Reply.text("fine")
        config = config_for(server, history_tokens=12)
        async with host_running(tmp_path, [AGENT, SESSION, LOOPBACK], config=config) as host:
            for text in ("one", "two", "three"):
                start = (
                    await host.call("session.begin_turn", channel="cli", chat_id="c", user_id="ann", content=text)
                ).data
            sid = start["session"]["session_id"]
            await run(host, message="three", session_id=sid, user_id="ann", history=start["history"]["messages"])
            # history_tokens = 12 keeps the two newest messages (5 + 6 tokens), not the three given
            assert [m["content"] for m in server.requests[-1]["messages"][1:]] == ["two", "three"]
            assert host.metrics.snapshot("session")["session.history"]["count"] == 1


@pytest.mark.asyncio
async def test_the_rules_file_is_read_again_when_it_changes(tmp_path):
    with ModelServer() as server:
        server.responder = lambda body: Reply.text("fine")
        rules = tmp_path / "workspace" / "AGENTS.md"
        async with host_running(tmp_path, [AGENT, LOOPBACK], config=config_for(server)) as host:
            await run(host, message="no rules yet")
            assert "Project rules" not in server.requests[-1]["messages"][0]["content"]
            rules.parent.mkdir()
            rules.write_text("Answer in French.")
            await run(host, message="rules now")
            assert "Answer in French." in server.requests[-1]["messages"][0]["content"]
            rules.write_text("Answer in German, always.")
            await run(host, message="changed")
            system = server.requests[-1]["messages"][0]["content"]
            assert "Answer in German, always." in system and "French" not in system
            rules.unlink()
            await run(host, message="gone")
            assert "Project rules" not in server.requests[-1]["messages"][0]["content"]


@pytest.mark.asyncio
async def test_a_run_with_its_own_workspace_reads_the_rules_there(tmp_path):
    with ModelServer() as server:
        server.responder = lambda body: Reply.text("fine")
        (tmp_path / "workspace").mkdir()
        (tmp_path / "workspace" / "AGENTS.md").write_text("Configured workspace rules.")
        per_run = tmp_path / "runs" / "task-1"
        per_run.mkdir(parents=True)
        (per_run / "AGENTS.md").write_text("Rules of the task's worktree.")
        async with host_running(tmp_path, [AGENT, LOOPBACK], config=config_for(server)) as host:
            await run(host, message="in the worktree", workspace=str(per_run))
            system = server.requests[-1]["messages"][0]["content"]
            assert "Rules of the task's worktree." in system and "Configured workspace" not in system
            await run(host, message="in the configured workspace")
            system = server.requests[-1]["messages"][0]["content"]
            assert "Configured workspace rules." in system and "worktree" not in system
            (per_run / "AGENTS.md").unlink()
            await run(host, message="a worktree without rules", workspace=str(per_run))
            assert "Project rules" not in server.requests[-1]["messages"][0]["content"]


@pytest.mark.asyncio
async def test_runs_without_tools_or_other_slices(tmp_path):
    with ModelServer() as server:
        server.script(Reply.text("just text"))
        async with host_running(tmp_path, [AGENT, LOOPBACK], config=config_for(server)) as host:
            result = await run(host, message="hello", session_id="none", user_id="u")
            assert result["answer"] == "just text" and "tools" not in server.requests[0]


@pytest.mark.asyncio
async def test_no_gateway_is_a_clear_answer(tmp_path):
    async with host_running(tmp_path, [AGENT], config={"core": {"health_interval": 3600}}) as host:
        result = await run(host, message="hello")
        assert not result["success"] and "no LLM gateway is installed" in result["answer"]


@pytest.mark.asyncio
async def test_prompts_are_versioned_and_used(tmp_path):
    with ModelServer() as server:
        server.responder = lambda body: Reply.text("ok")
        async with host_running(tmp_path, [AGENT, LOOPBACK], config=config_for(server)) as host:
            first = (await host.call("agent.get_prompt", name="system")).data
            assert first["version"] == 1 and "{memories}" in first["content"]
            new = (
                await host.call("agent.set_prompt", name="system", content="You are terse. {date}", note="short")
            ).data
            assert new["version"] == 2
            await run(host, message="hi")
            assert server.requests[-1]["messages"][0]["content"].startswith("You are terse. 20")
            old = (await host.call("agent.get_prompt", name="system", version=1)).data
            assert old["content"] == first["content"]
            listed = (await host.call("agent.list_prompts")).data
            assert {p["name"]: p["version"] for p in listed} == {"planner": 1, "system": 2, "tool_fallback": 1}
            missing = await host.call("agent.get_prompt", name="nope")
            assert not missing.success and "no prompt 'nope'" in missing.error_message
        async with host_running(tmp_path, [AGENT, LOOPBACK], config=config_for(server)) as host:
            assert (await host.call("agent.get_prompt", name="system")).data["version"] == 2


@pytest.mark.asyncio
async def test_stream_run_yields_text_and_runs_tools(tmp_path):
    with ModelServer() as server:
        server.script(
            Reply.tool_call("files_write", {"path": "s.txt", "content": "streamed"}),
            Reply.text("<think>secret reasoning</think>Wrote s.txt for you.\nREMEMBER: likes streams\nBye."),
        )
        async with host_running(tmp_path, [AGENT, LOOPBACK, tools_plugin], config=config_for(server)) as host:
            stream = host.astream("agent.stream_run", message="write s.txt", user_id="u")
            chunks = [c async for c in stream]
            text = "".join(chunks)
            assert text == "Wrote s.txt for you.\nBye."
            assert len(chunks) > 1
            assert stream.response.success, stream.response.error_message
            result = stream.response.data
            assert result["answer"] == "Wrote s.txt for you.\nBye."
            assert result["remember"] == ["likes streams"]
            assert result["tool_calls"][0]["tool"] == "files_write"
            assert host.metrics.snapshot("agent")["agent.stream_run"]["count"] == 1
            assert (tmp_path / "workspace" / "s.txt").read_text() == "streamed"
            assert all(r.get("stream") for r in server.requests)
