"""``refactorbot demo``: the real pipeline against an offline, scripted model.

Everything is real — slices, SQLite files, the tools slice and the files tool, the litellm gateway
speaking HTTP — except the model: a loopback server from the testing kit plays a short script.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from refactorbot import hookimpl
from refactorbot.cli import Env, fail

DEMO_MODEL = "openai/refactorbot-demo"
DEMO_KEY_ENV = "REFACTORBOT_DEMO_KEY"
NOTE_PATH = "notes/haiku.txt"
HAIKU = "Rows rest in one file\nwrite-ahead log keeps the night\nqueries wake at dawn\n"
USER = "ada"
TURNS = (
    ("demo-1", "Hi, I'm Ada. Please save a haiku about SQLite to notes/haiku.txt and read it back to me."),
    ("demo-2", "Do you remember my name, and what you saved for me?"),
)

#: (kind, name, distribution) every part the demo needs.
NEEDED = (
    ("slices", "session", "refactorbot-slice-session"),
    ("slices", "memory", "refactorbot-slice-memory"),
    ("slices", "tools", "refactorbot-slice-tools"),
    ("slices", "agent", "refactorbot-slice-agent"),
    ("tools", "files_write", "refactorbot-tools-files"),
    ("tools", "files_read", "refactorbot-tools-files"),
    ("gateways", "litellm", "refactorbot-gateway-litellm"),
)


def missing_parts(plugins: Any) -> list[str]:
    """Return the distributions the demo needs that are not installed (or failed to load)."""
    missing = []
    for kind, name, dist in NEEDED:
        if name not in plugins.registry.of(kind) and dist not in missing:
            missing.append(dist)
    return missing


def _tool_called(messages: list[dict[str, Any]], call_id: str) -> str:
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if call.get("id") == call_id:
                return str(call["function"]["name"])
    return ""


def demo_responder(body: dict[str, Any]) -> Any:
    """Answer like a model following the demo script; recall comes only from what the prompt holds."""
    from refactorbot.testing import Reply

    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        tool, output = _tool_called(messages, last.get("tool_call_id", "")), str(last.get("content", ""))
        if output.startswith("ERROR:"):
            return Reply.text(f"The {tool} tool refused: {output[6:].strip()}")
        if tool == "files_write":
            return Reply.tool_call("files_read", {"path": NOTE_PATH})
        return Reply.text(
            "Nice to meet you, Ada! I saved a haiku to notes/haiku.txt. Reading it back:\n\n"
            f"{output.strip()}\n"
            "REMEMBER: The user's name is Ada.\n"
            "REMEMBER: Ada asked for a SQLite haiku, saved in notes/haiku.txt."
        )
    text = str(last.get("content") or "").lower()
    if "haiku" in text:
        return Reply.tool_call("files_write", {"path": NOTE_PATH, "content": HAIKU})
    system = str(messages[0].get("content", "")) if messages else ""
    name = re.search(r"user's name is (\w+)", system)
    saved = re.search(r"saved in (\S+?)\.?$", system, re.MULTILINE)
    if "remember" in text or "name" in text:
        if not name:
            return Reply.text("I don't know your name yet — nothing about you is in my memory.")
        where = f" I saved a haiku for you in {saved.group(1)}." if saved else ""
        return Reply.text(f"Of course: you are {name.group(1)}.{where} (Recalled from memory — this is a new session.)")
    return Reply.text("This offline model only knows the demo script; run `refactorbot chat` with a real model.")


class DemoProgress:
    """Print which slice, model call and tool ran, as it happens (repeats of one line are folded)."""

    REFACTORBOT_API = 1
    QUIET = {"session.history", "tools.list", "tools.execute"}

    def __init__(self) -> None:
        self.model_calls = 0
        self.tool_calls = 0
        self.mid_line = False  # the answer being streamed has not ended its line yet
        self._last = ""

    def line(self, text: str, **style: Any) -> None:
        """Print one progress line, unless it repeats the previous one."""
        if text == self._last:
            return
        self._last = text
        if self.mid_line:
            click.echo()
            self.mid_line = False
        click.secho(f"  · {text}", **style)

    @hookimpl
    def before_operation(self, request: Any) -> None:
        target = f"{request.slice_id}.{request.operation}"
        if target not in self.QUIET:
            self.line(target, dim=True)

    @hookimpl
    def before_llm_call(self, call: Any) -> None:
        self.model_calls += 1
        first = " (loads litellm on the first call)" if self.model_calls == 1 else ""
        self.line(f"model {call.model} via {call.gateway}, call {self.model_calls}{first}", dim=True)

    @hookimpl
    def after_tool_call(self, call: Any, result: Any) -> None:
        self.tool_calls += 1
        status = "ok" if result.ok else f"refused: {result.error}"
        self.line(f"tool {call.tool}({call.arguments.get('path', '')}) -> {status}", fg="cyan")


def _demo_home(env: Env, keep: bool) -> tuple[Path, bool]:
    if env.home_option:
        return env.home, False
    return Path(tempfile.mkdtemp(prefix="refactorbot-demo-")), not keep


async def run_demo(env: Env, keep: bool) -> None:
    """Play the demo conversation through the installed plugins and print the transcript."""
    try:
        from refactorbot.testing import ModelServer
    except ImportError as exc:
        fail(env, f"refactorbot demo needs the testing kit: pip install 'refactorbot-core[testing]' ({exc})")
    plugins = env.plugins()
    missing = missing_parts(plugins)
    if missing:
        broken = {r.name: r.error for r in plugins.failed}
        notes = [f"{d} ({broken[d]})" if d in broken else d for d in missing]
        fail(env, f"refactorbot demo needs {', '.join(notes)}: pip install {' '.join(missing)}")
    progress = DemoProgress()
    plugins.register(progress, name="refactorbot-demo-progress")
    home, remove = _demo_home(env, keep)
    previous_key = os.environ.get(DEMO_KEY_ENV)
    os.environ[DEMO_KEY_ENV] = "sk-offline-demo"  # a dummy key, in this process only
    started = time.perf_counter()
    try:
        with ModelServer(responder=demo_responder) as server:
            await _play(home, server.base_url, plugins, progress)
    finally:
        if previous_key is None:
            os.environ.pop(DEMO_KEY_ENV, None)
        else:
            os.environ[DEMO_KEY_ENV] = previous_key
        plugins.pm.unregister(progress)
        if remove:
            shutil.rmtree(home, ignore_errors=True)
    click.echo()
    click.secho(
        f"Done in {time.perf_counter() - started:.1f}s: {len(TURNS)} turns, {progress.model_calls} model calls,"
        f" {progress.tool_calls} tool calls — offline, no key.",
        bold=True,
    )
    if not remove:
        click.echo(f"Everything is kept in {home}: workspace/{NOTE_PATH}, slices/*.db (sessions, memories, tool log).")
    click.echo(
        "\nUse a real model:\n"
        "  export RB_MODEL=openai/gpt-4o-mini OPENAI_API_KEY=sk-...          # OpenAI through litellm\n"
        "  export RB_MODEL=openrouter/anthropic/claude-3.5-sonnet OPENROUTER_API_KEY=...   # or OpenRouter\n"
        '  refactorbot chat "what is in my workspace?"'
    )


async def _play(home: Path, base_url: str, plugins: Any, progress: DemoProgress) -> None:
    from refactorbot import IncomingMessage, MasterChat, MasterCore, load_settings

    settings = load_settings(home, env={})
    settings.llm.model, settings.llm.gateway = DEMO_MODEL, "litellm"
    settings.gateways["litellm"] = {"api_base": base_url, "api_key_env": DEMO_KEY_ENV}
    click.secho("refactorbot demo — the real pipeline, an offline scripted model (no key, no network)", bold=True)
    click.echo(f"  home:  {home}")
    click.echo(f"  model: {DEMO_MODEL} via the litellm gateway at {base_url}")
    async with MasterCore(settings, plugins, env={}, serving=False) as host:  # no HTTP server for a demo
        click.echo(f"  slices running: {', '.join(host.running_slices())}")
        for slot in host.slice_status():
            if slot["status"] == "failed":
                click.secho(f"  slice {slot['slice_id']} failed: {slot['error']}", fg="red", err=True)
        master_chat = MasterChat(host)
        for number, (chat_id, text) in enumerate(TURNS, 1):
            click.echo()
            click.secho(f"[{number}/{len(TURNS)}] {USER} (chat {chat_id}): {text}", fg="green", bold=True)
            started = False
            incoming = IncomingMessage(channel="demo", chat_id=chat_id, sender_id=USER, text=text)
            async for chunk in master_chat.stream_message(incoming):
                if not started:
                    click.secho("refactorbot: ", fg="magenta", bold=True, nl=False)
                    started = True
                click.echo(chunk, nl=False)
                progress.mid_line = not chunk.endswith("\n")
            if progress.mid_line:
                click.echo()
                progress.mid_line = False
        memories = await host.call("memory.search", user_id=USER, limit=10, touch=False)
        if memories.success:
            click.echo()
            click.echo(f"Memories of {USER} (kept across sessions, never shown to other users):")
            for memory in memories.data["memories"]:
                click.echo(f"  - {memory['content']}")
