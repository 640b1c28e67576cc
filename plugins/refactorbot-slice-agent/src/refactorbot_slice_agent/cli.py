"""``refactorbot chat`` and ``refactorbot demo``."""

from __future__ import annotations

import getpass
from typing import Any

import click
from refactorbot.cli import Env, fail, run

MODES = click.Choice(["auto", "single", "two_phase"])


def _env() -> Env:
    env = click.get_current_context().find_object(Env)
    if env is None:  # commands always run under the root group, which creates it
        raise click.UsageError("refactorbot chat must run under the refactorbot command")
    return env


def _default_user() -> str:
    try:
        return getpass.getuser() or "local"
    except (OSError, KeyError):
        return "local"


def _read_line(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


@click.command()
@click.argument("message", required=False)
@click.option("--chat-id", default="cli", show_default=True, help="Conversation to continue (one session per chat).")
@click.option("--user", "user_id", default=None, help="Your user id for memories (default: your login name).")
@click.option("--model", default=None, help="Model to use (default: RB_MODEL / [llm] model).")
@click.option("--mode", type=MODES, default="auto", show_default=True, help="Plan first (two_phase) or not.")
@click.option("--local", is_flag=True, help="Run in this process even when a server is running.")
def chat(message: str | None, chat_id: str, user_id: str | None, model: str | None, mode: str, local: bool) -> None:
    """Talk to the agent: one MESSAGE, or an interactive conversation when none is given."""
    env = _env()
    user = user_id or _default_user()
    if not local and model is None and mode == "auto":
        from refactorbot import ServerClient

        client = ServerClient.discover(env.home)
        if client is not None:
            _chat_remote(env, client, message, chat_id, user)
            return
    run(env, lambda: _chat_local(env, message, chat_id, user, model, mode))


def _chat_remote(env: Env, client: Any, message: str | None, chat_id: str, user: str) -> None:
    """Send turns to the running server's ``POST /chat/stream`` and print the answer as it arrives."""

    def turn(text: str) -> None:
        reply: dict[str, Any] | None = None
        try:
            for event in client.stream("/chat/stream", {"text": text, "chat_id": chat_id, "sender_id": user}):
                if "delta" in event:
                    click.echo(event["delta"], nl=False)
                reply = event.get("reply", reply)
        except OSError as exc:
            fail(env, f"the server at {client.url} refused or did not answer: {exc}")
        click.echo()
        if message is not None and reply is not None and not (reply.get("metadata") or {}).get("ok", True):
            raise SystemExit(1)  # a one-shot turn that failed fails the command

    if message is not None:
        turn(message)
        return
    _interactive_banner(f"server {client.url}")
    while (line := _read_line("you> ")) is not None:
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip():
            turn(line)


async def _chat_local(env: Env, message: str | None, chat_id: str, user: str, model: str | None, mode: str) -> None:
    """Run the host in this process and stream each answer as it arrives."""
    import asyncio  # here: a turn sent to a running server does not need it

    from refactorbot import IncomingMessage, MasterChat, committed

    host = env.master()  # one-shot: no control API in this process; `refactorbot serve` is the place for one
    async with host:
        if not host.has_slice("agent"):
            click.secho("warning: the agent slice is not running; replies will say so.", fg="yellow", err=True)
        master_chat = MasterChat(host, model=model, mode=mode)

        async def turn(text: str) -> None:
            incoming = IncomingMessage(channel="cli", chat_id=chat_id, sender_id=user, text=text)
            async for chunk in master_chat.stream_message(incoming):
                await committed()  # as the API streams: what is shown has its rows on disk
                click.echo(chunk, nl=False)
            await committed()
            click.echo()

        if message is not None:
            await turn(message)
            reply = master_chat.last_reply
            if reply is not None and not reply.metadata.get("ok", True):
                raise SystemExit(1)  # a one-shot turn that failed fails the command
            return
        _interactive_banner(f"{len(host.running_slices())} slices in this process")
        while (line := await asyncio.to_thread(_read_line, "you> ")) is not None:
            if line.strip() in ("/exit", "/quit"):
                break
            if line.strip():
                await turn(line)


def _interactive_banner(where: str) -> None:
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    click.echo(f"refactorbot chat ({where}); /exit or Ctrl-D to leave.")


@click.command()
@click.option("--keep", is_flag=True, help="Keep the temporary home afterwards (ignored with --home).")
def demo(keep: bool) -> None:
    """Run the real pipeline on an offline scripted model: sessions, memory, a file tool; no key, no network."""
    from refactorbot_slice_agent.demo import run_demo

    env = _env()
    run(env, lambda: run_demo(env, keep))
