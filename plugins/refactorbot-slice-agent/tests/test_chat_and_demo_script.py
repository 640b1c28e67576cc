"""``refactorbot chat`` in this process, and the demo's scripted model and progress lines, through the real agent.

The model is the testing kit's loopback gateway speaking HTTP to a ``ModelServer``. For the CLI, the
gateway is installed the way any plugin is: a distribution's metadata on ``sys.path`` whose
``refactorbot`` entry point names ``refactorbot.testing.loopback``.
"""

from __future__ import annotations

import pytest
from agent_fixtures import tools_plugin
from click.testing import CliRunner
from refactorbot import IncomingMessage, MasterChat
from refactorbot.cli.main import main
from refactorbot.testing import host_running, loopback_config
from refactorbot.testing.model_server import ModelServer, Reply
from refactorbot_slice_agent.demo import HAIKU, NOTE_PATH, TURNS, USER, DemoProgress, demo_responder

AGENT = "refactorbot_slice_agent.plugin"
SESSION = "refactorbot_slice_session.plugin"
MEMORY = "refactorbot_slice_memory.plugin"
LOOPBACK = "refactorbot.testing.loopback"


@pytest.fixture
def loopback_installed(tmp_path, monkeypatch):
    """Install the kit's loopback gateway as an entry-point plugin (metadata on sys.path)."""
    site = tmp_path / "site"
    info = site / "refactorbot_loopback_gateway-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: refactorbot-loopback-gateway\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[refactorbot]\nloopback = {LOOPBACK}\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("RB_MODEL", raising=False)
    monkeypatch.delenv("RB_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("RB_DISABLE_PLUGINS", raising=False)


def _home(tmp_path, server: ModelServer):
    home = tmp_path / "home"
    home.mkdir()
    (home / "refactorbot.toml").write_text(
        '[llm]\nmodel = "loopback/scripted-model"\ngateway = "loopback"\n'
        f'[gateways.loopback]\nbase_url = "{server.base_url}"\n'
    )
    return home


def test_chat_one_shot_then_interactive_continues_the_session(tmp_path, loopback_installed):
    with ModelServer() as server:
        server.script(Reply.text("Hello from the scripted model."), Reply.text("Second turn."))
        home = _home(tmp_path, server)
        first = CliRunner().invoke(main, ["--home", str(home), "chat", "--local", "--user", "carol", "hi there"])
        assert first.exit_code == 0, first.output
        assert first.output.strip() == "Hello from the scripted model."
        second = CliRunner().invoke(
            main, ["--home", str(home), "chat", "--local", "--user", "carol"], input="\nand again\n/exit\n"
        )
    assert second.exit_code == 0, second.output
    assert "refactorbot chat (" in second.output and "/exit or Ctrl-D to leave" in second.output
    assert "Second turn." in second.output
    assert len(server.requests) == 2  # the empty line was not sent
    roles = [m["role"] for m in server.requests[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]  # the first exchange is the session's history


def test_chat_interactive_ends_at_end_of_input(tmp_path, loopback_installed):
    with ModelServer() as server:
        server.script(Reply.text("Only answer."))
        home = _home(tmp_path, server)
        result = CliRunner().invoke(
            main, ["--home", str(home), "chat", "--local"], input="one\n"
        )  # user: the login name
    assert result.exit_code == 0, result.output
    assert "Only answer." in result.output and len(server.requests) == 1


def test_chat_one_shot_fails_when_the_model_fails(tmp_path, loopback_installed):
    with ModelServer() as server:
        server.script(*[Reply.error(500)] * 4)
        home = _home(tmp_path, server)
        result = CliRunner().invoke(main, ["--home", str(home), "chat", "--local", "--user", "dave", "hi"])
    assert result.exit_code == 1, result.output
    assert "Sorry, I could not answer" in result.output and "500" in result.output


def test_chat_warns_when_the_agent_slice_is_not_running(tmp_path, loopback_installed, monkeypatch):
    monkeypatch.setenv("RB_DISABLE_PLUGINS", "refactorbot-slice-agent")
    with ModelServer() as server:
        home = _home(tmp_path, server)
        result = CliRunner().invoke(main, ["--home", str(home), "chat", "--local", "--user", "fay", "hi"])
    assert "warning: the agent slice is not running" in result.output
    assert server.requests == []


@pytest.mark.asyncio
async def test_the_demo_script_plays_through_the_agent_with_its_progress_lines(tmp_path, capsys):
    progress = DemoProgress()
    (tmp_path / "workspace" / "notes").mkdir(parents=True)  # the test's tools slice writes into existing folders
    with ModelServer(responder=demo_responder) as server:
        config = {"core": {"health_interval": 3600}, **loopback_config(server)}
        plugins = [AGENT, SESSION, MEMORY, tools_plugin, LOOPBACK, progress]
        async with host_running(tmp_path, plugins, config=config) as host:
            chat = MasterChat(host)
            replies = []
            for chat_id, text in TURNS:
                incoming = IncomingMessage(channel="demo", chat_id=chat_id, sender_id=USER, text=text)
                replies.append((await chat.process_message(incoming)).text)
            stranger = IncomingMessage(channel="demo", chat_id="demo-3", sender_id="bob", text="Remember my name?")
            replies.append((await chat.process_message(stranger)).text)
            other = IncomingMessage(channel="demo", chat_id="demo-4", sender_id="bob", text="What is the weather?")
            replies.append((await chat.process_message(other)).text)
    assert (tmp_path / "workspace" / NOTE_PATH).read_text() == HAIKU
    assert "I saved a haiku to notes/haiku.txt" in replies[0] and HAIKU.strip() in replies[0]
    assert replies[1].startswith("Of course: you are Ada. I saved a haiku for you in notes/haiku.txt")
    assert replies[2] == "I don't know your name yet — nothing about you is in my memory."  # bob's memory is empty
    assert replies[3].startswith("This offline model only knows the demo script")
    assert progress.model_calls == len(server.requests) == 6  # 3 for the first turn (write, read, answer), 1 each other
    out = capsys.readouterr().out
    assert "model loopback/scripted-model via loopback, call 1 (loads litellm on the first call)" in out
    assert "model loopback/scripted-model via loopback, call 6\n" in out
    assert "agent.run" in out and "tools.execute" not in out  # the quiet operations are not printed


def test_the_demo_model_reports_a_refused_tool():
    body = {
        "messages": [
            {"role": "user", "content": "save a haiku"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "files_write", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ERROR: path escapes the workspace"},
        ]
    }
    reply = demo_responder(body)
    assert reply.content == "The files_write tool refused: path escapes the workspace"


def test_demo_progress_folds_repeated_lines(capsys):
    progress = DemoProgress()
    progress.mid_line = True  # an answer was being streamed
    progress.line("agent.run")
    progress.line("agent.run")
    progress.line("session.get_or_create")
    assert capsys.readouterr().out == "\n  · agent.run\n  · session.get_or_create\n"
    assert progress.mid_line is False


def _serving(tmp_path, server: ModelServer):
    """Serve the agent, session and memory slices with the API, the model through the loopback gateway."""
    from refactorbot_api.testing import running_server

    home = tmp_path / "served"
    config = {"core": {"health_interval": 3600}, **loopback_config(server)}
    return home, running_server(home, [AGENT, SESSION, MEMORY, LOOPBACK], config=config)


def test_chat_talks_to_a_running_server_one_shot_and_interactive(tmp_path, monkeypatch):
    monkeypatch.delenv("RB_MODEL", raising=False)
    with ModelServer() as server:
        server.script(Reply.text("Served answer."), Reply.text("Second served answer."))
        home, serving = _serving(tmp_path, server)
        with serving:
            one = CliRunner().invoke(main, ["--home", str(home), "chat", "--user", "dave", "hello"])
            assert one.exit_code == 0, one.output
            assert one.output.strip() == "Served answer."
            more = CliRunner().invoke(main, ["--home", str(home), "chat", "--user", "dave"], input="again\n/exit\n")
    assert more.exit_code == 0, more.output
    assert "refactorbot chat (server http://" in more.output and "Second served answer." in more.output
    assert len(server.requests) == 2
    roles = [m["role"] for m in server.requests[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]  # the server kept the chat's session


def test_chat_against_a_server_fails_when_the_turn_fails(tmp_path, monkeypatch):
    monkeypatch.delenv("RB_MODEL", raising=False)
    with ModelServer() as server:
        server.script(*[Reply.error(500)] * 4)
        home, serving = _serving(tmp_path, server)
        with serving:
            failed = CliRunner().invoke(main, ["--home", str(home), "chat", "hello"])
    assert failed.exit_code == 1, failed.output
    assert "Sorry, I could not answer" in failed.output  # the server's answer to a failed turn, printed
    assert server.requests  # it was the server's turn that failed, not the command
