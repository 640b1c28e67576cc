"""The agent end to end, every part real: litellm gateway over HTTP to the loopback model server,
the tools slice with the files tool, sessions and memory in SQLite, MasterChat on top."""

from __future__ import annotations

import pytest
from refactorbot import IncomingMessage
from refactorbot.chat import MasterChat
from refactorbot.testing import host_running
from refactorbot.testing.model_server import ModelServer, Reply

PLUGINS = [
    "refactorbot_slice_session.plugin",
    "refactorbot_slice_memory.plugin",
    "refactorbot_slice_tools.plugin",
    "refactorbot_slice_agent.plugin",
    "refactorbot_tools_files.plugin",
    "refactorbot_gateway_litellm.plugin",
]
KEY_ENV = "RB_E2E_DUMMY_KEY"


def config(server):
    return {
        "core": {"health_interval": 3600},
        "llm": {"model": "openai/scripted", "gateway": "litellm"},
        "gateways": {"litellm": {"api_base": server.base_url, "api_key_env": KEY_ENV}},
    }


def message(text, chat_id, sender):
    return IncomingMessage(channel="test", chat_id=chat_id, sender_id=sender, text=text)


@pytest.mark.asyncio
async def test_chat_turn_with_tools_session_and_memory(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-dummy-for-the-loopback-server")
    with ModelServer() as server:
        async with host_running(tmp_path, PLUGINS, config=config(server)) as host:
            chat = MasterChat(host)

            # Session 1 of alice: the model writes a file, reads it back, answers and marks a fact.
            server.script(
                Reply.tool_call("files_write", {"path": "notes/plan.txt", "content": "ship on friday"}),
                Reply.tool_call("files_read", {"path": "notes/plan.txt"}),
                Reply.text("<think>done</think>Saved. The file says: ship on friday\nREMEMBER: alice ships on friday"),
            )
            reply = await chat.process_message(message("save the plan to notes/plan.txt", "chat-a1", "alice"))
            assert reply.text == "Saved. The file says: ship on friday"
            assert reply.metadata["tool_calls"] == ["files_write", "files_read"]
            assert reply.metadata["remembered"] == ["alice ships on friday"]
            assert (tmp_path / "workspace" / "notes" / "plan.txt").read_text() == "ship on friday"
            # the gateway sent real tool schemas and the tool results in OpenAI format
            assert "files_write" in {t["function"]["name"] for t in server.requests[0]["tools"]}
            sent = server.requests[2]["messages"]
            assert sent[-1]["role"] == "tool" and sent[-1]["content"] == "ship on friday"
            assert sent[-1]["tool_call_id"] == sent[-2]["tool_calls"][0]["id"]

            session_id = reply.metadata["session_id"]
            log = (await host.call("tools.history", session_id=session_id)).data["executions"]
            assert [e["tool"] for e in reversed(log)] == ["files_write", "files_read"]
            assert all(e["success"] and e["user_id"] == "alice" for e in log)

            history = (await host.call("session.history", session_id=session_id)).data["messages"]
            assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
            assert history[0]["content"] == "save the plan to notes/plan.txt"
            assert history[-1]["content"] == "Saved. The file says: ship on friday"

            # bob, in his own chat, says something: his turn must not see alice's memory.
            server.script(Reply.text("Hello bob."))
            await chat.process_message(message("when do we ship?", "chat-b1", "bob"))
            assert "ships on friday" not in server.requests[-1]["messages"][0]["content"]

            # Session 2 of alice (a new chat): the fact from session 1 is recalled into the prompt, streamed answer.
            server.responder = lambda body: Reply.text(
                "You ship on friday." if "alice ships on friday" in body["messages"][0]["content"] else "No idea."
            )
            chunks = [c async for c in chat.stream_message(message("when do we ship?", "chat-a2", "alice"))]
            assert "".join(chunks) == "You ship on friday."
            assert server.requests[-1].get("stream") is True
            new_session = (
                await host.call("session.get_or_create", channel="test", chat_id="chat-a2", user_id="alice")
            ).data
            assert new_session["session_id"] != session_id and new_session["message_count"] == 2

            recalled = (await host.call("memory.search", user_id="alice", query="when do we ship")).data["memories"]
            assert [m["content"] for m in recalled] == ["alice ships on friday"]
            assert (await host.call("memory.search", user_id="bob", query="ship friday")).data["memories"] == []

            executions = (await host.call("agent.executions", user_id="alice")).data
            assert len(executions) == 2 and executions[-1]["steps"] == 3


def _cli(args, **kwargs):
    from click.testing import CliRunner
    from refactorbot.cli.main import main

    return CliRunner().invoke(main, args, catch_exceptions=False, **kwargs)


def test_demo_runs_the_real_pipeline_offline(tmp_path):
    home = tmp_path / "home"
    result = _cli(["--home", str(home), "demo"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "tool files_write(notes/haiku.txt) -> ok" in out and "tool files_read(notes/haiku.txt) -> ok" in out
    assert "via litellm" in out and "Of course: you are Ada." in out
    assert "The user's name is Ada." in out and "RB_MODEL=openai/gpt-4o-mini" in out
    assert (home / "workspace" / "notes" / "haiku.txt").read_text().startswith("Rows rest in one file")
    assert (home / "slices" / "memory.db").exists()


def test_demo_names_the_missing_plugin(tmp_path, monkeypatch):
    monkeypatch.setenv("RB_DISABLE_PLUGINS", "refactorbot-tools-files")
    from click.testing import CliRunner
    from refactorbot.cli.main import main

    result = CliRunner().invoke(main, ["--home", str(tmp_path), "demo"])
    assert result.exit_code == 1
    assert "refactorbot demo needs refactorbot-tools-files: pip install refactorbot-tools-files" in result.output


def test_chat_one_shot_in_process_streams_the_answer(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-dummy")
    monkeypatch.delenv("RB_MODEL", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    with ModelServer() as server:
        server.script(Reply.text("Hello from the scripted model."), Reply.text("Second turn."))
        (home / "refactorbot.toml").write_text(
            f'[llm]\nmodel = "openai/scripted"\n[gateways.litellm]\napi_base = "{server.base_url}"\n'
            f'api_key_env = "{KEY_ENV}"\n'
        )
        first = _cli(["--home", str(home), "chat", "--local", "--user", "carol", "hi there"])
        assert first.exit_code == 0, first.output
        assert first.output.strip() == "Hello from the scripted model."
        second = _cli(["--home", str(home), "chat", "--local", "--user", "carol"], input="and again\n/exit\n")
        assert "Second turn." in second.output
        # the interactive turn continued the same session: the first exchange was in its history
        roles = [m["role"] for m in server.requests[-1]["messages"]]
        assert roles == ["system", "user", "assistant", "user"]


def test_chat_one_shot_fails_when_the_model_fails(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-dummy")
    monkeypatch.delenv("RB_MODEL", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    with ModelServer() as server:
        server.script(Reply.error(500), Reply.error(500), Reply.error(500), Reply.error(500))
        (home / "refactorbot.toml").write_text(
            f'[llm]\nmodel = "openai/scripted"\n[gateways.litellm]\napi_base = "{server.base_url}"\n'
            f'api_key_env = "{KEY_ENV}"\nnum_retries = 0\n'
        )
        result = _cli(["--home", str(home), "chat", "--local", "--user", "dave", "hi"])
    assert result.exit_code == 1, result.output
    assert "Sorry, I could not answer" in result.output and "500" in result.output


NO_KEY = (
    "OPENAI_API_KEY is not set (needed for model openai/gpt-4o-mini); export it or choose another model with RB_MODEL"
)

CHAT_WITHOUT_KEY = """
import sys
from refactorbot.cli.main import main
try:
    main(["--home", sys.argv[1], "chat", "--local", "--user", "erin", "hello"])
except SystemExit as exc:
    code = exc.code
print("litellm imported:", "litellm" in sys.modules, file=sys.stderr)
sys.exit(code)
"""


def test_chat_without_a_key_fails_at_once_naming_the_variable(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY" and not k.startswith("RB_")}
    done = subprocess.run(
        [sys.executable, "-c", CHAT_WITHOUT_KEY, str(tmp_path / "home")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.strip() == f"Sorry, I could not answer: {NO_KEY}"
    assert "litellm imported: False" in done.stderr  # failed before importing it, so before any request


@pytest.mark.asyncio
async def test_a_turn_without_a_key_sends_nothing_and_stores_no_answer(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with ModelServer() as server:
        config = {
            "core": {"health_interval": 3600},
            "llm": {"model": "openai/gpt-4o-mini", "gateway": "litellm"},
            "gateways": {"litellm": {"api_base": server.base_url}},
        }
        async with host_running(tmp_path, PLUGINS, config=config) as host:
            chat = MasterChat(host)
            streamed = "".join([c async for c in chat.stream_message(message("hello", "chat-k", "erin"))])
            answered = await chat.process_message(message("hello again", "chat-k", "erin"))
            assert streamed == answered.text == f"Sorry, I could not answer: {NO_KEY}"
            assert answered.metadata["ok"] is False and answered.metadata["error"] == NO_KEY
            session_id = answered.metadata["session_id"]
            history = (await host.call("session.history", session_id=session_id)).data["messages"]
            assert [(m["role"], m["content"]) for m in history] == [("user", "hello"), ("user", "hello again")]
            executions = (await host.call("agent.executions", user_id="erin")).data
            assert [e["success"] for e in executions] == [False, False] and NO_KEY in executions[0]["error"]
    assert server.requests == []
