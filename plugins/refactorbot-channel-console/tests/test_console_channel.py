"""The console channel: the channel contract over real pipes, and how it reads, prints and decides to run."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from refactorbot.channels import Delivery
from refactorbot.models import OutgoingMessage
from refactorbot.testing import ChannelContract, Inbox
from refactorbot_channel_console.channel import ConsoleChannel


class Screen(io.StringIO):
    """A real text stream that also remembers each write (the channel writes one message at a time)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


class Terminal:
    """A pipe to type into and a screen to read from."""

    def __init__(self) -> None:
        read, write = os.pipe()
        self.input = os.fdopen(read, "r", encoding="utf-8")
        self.keyboard = os.fdopen(write, "w", encoding="utf-8", buffering=1)
        self.screen = Screen()

    def type(self, line: str) -> None:
        self.keyboard.write(line + "\n")

    def close(self) -> None:
        if not self.keyboard.closed:
            self.keyboard.close()


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    found = Terminal()
    yield found
    found.close()


def console(terminal: Terminal, **config: Any) -> ConsoleChannel:
    adapter = ConsoleChannel(config, env={})
    adapter.input, adapter.output = terminal.input, terminal.screen
    return adapter


class TestConsoleContract(ChannelContract):
    adapter_class = ConsoleChannel
    plugin = "refactorbot_channel_console.plugin"

    @pytest.fixture
    def platform(self, terminal: Terminal) -> Terminal:
        return terminal

    def adapter_config(self, platform: Any) -> dict[str, Any]:
        return {"chat_id": self.chat_id, "sender_id": self.sender_id}

    def make_adapter(self, platform: Any, **overrides: Any) -> Any:
        return console(platform, **self.adapter_config(platform), **overrides)

    def delivered(self, platform: Any, adapter: Any) -> list[tuple[str, str]]:
        found = []
        for text in platform.screen.writes:
            chat = self.chat_id
            if text.startswith("["):
                chat, _, text = text[1:].partition("] ")
            found.append((chat, text.removesuffix("\n")))
        return found

    async def push_inbound(
        self, adapter: Any, platform: Any, *, chat_id: str, sender_id: str, text: str, message_id: str
    ) -> None:
        platform.type(text)


@pytest.mark.asyncio
async def test_each_line_is_a_message_blank_ones_are_skipped(terminal: Terminal) -> None:
    adapter = console(terminal, sender_name="Ada")
    inbox = Inbox()
    adapter.bind(inbox)
    await adapter.start()
    try:
        for line in ("hello", "   ", "", "second line"):
            terminal.type(line)
        first, second = await inbox.wait_for(2)
    finally:
        await adapter.stop()
    assert (first.text, second.text) == ("hello", "second line")
    assert (first.chat_id, first.sender_id, first.sender_name) == ("console", "console", "Ada")
    assert first.message_id != second.message_id and not first.is_group


@pytest.mark.asyncio
async def test_replies_are_printed_one_write_each_other_chats_marked(terminal: Terminal) -> None:
    adapter = console(terminal)
    adapter.bind(Inbox())
    await adapter.start()
    try:
        first = await adapter.send(OutgoingMessage(channel="console", chat_id="console", text="line one\nline two"))
        second = await adapter.send(OutgoingMessage(channel="console", chat_id="ops", text="to ops\n"))
    finally:
        await adapter.stop()
    assert terminal.screen.writes == ["line one\nline two\n", "[ops] to ops\n"]
    assert first != second


@pytest.mark.asyncio
async def test_a_busy_host_is_told_to_the_typist(terminal: Terminal) -> None:
    adapter = console(terminal)
    inbox = Inbox(answer=Delivery.BUSY)
    adapter.bind(inbox)
    await adapter.start()
    try:
        terminal.type("too fast")
        await inbox.wait_for(1)
        async with asyncio.timeout(30):
            while not terminal.screen.writes:
                await asyncio.sleep(0.01)
    finally:
        await adapter.stop()
    assert terminal.screen.writes == ["(busy: wait for the answer before typing more)\n"]


@pytest.mark.asyncio
async def test_a_restarted_channel_keeps_reading_the_same_input(terminal: Terminal) -> None:
    first = console(terminal)
    first.bind(Inbox())
    await first.start()
    await first.stop()
    second = console(terminal)
    inbox = Inbox()
    second.bind(inbox)
    await second.start()
    try:
        terminal.type("after the restart")
        (message,) = await inbox.wait_for(1)
    finally:
        await second.stop()
    assert message.text == "after the restart"


@pytest.mark.asyncio
async def test_after_the_end_of_input_it_still_prints(terminal: Terminal) -> None:
    adapter = console(terminal)
    inbox = Inbox()
    adapter.bind(inbox)
    await adapter.start()
    try:
        terminal.type("last words")
        terminal.close()
        await inbox.wait_for(1)
        ids = await adapter.send(OutgoingMessage(channel="console", chat_id="console", text="still here"))
    finally:
        await adapter.stop()
    assert ids and terminal.screen.writes == ["still here\n"]


@pytest.mark.asyncio
async def test_a_closed_output_is_a_permanent_send_failure(terminal: Terminal) -> None:
    from refactorbot.channels import SendFailed

    adapter = console(terminal)
    adapter.bind(Inbox())
    await adapter.start()
    terminal.screen.close()
    try:
        with pytest.raises(SendFailed, match="console output is closed") as failed:
            await adapter.send(OutgoingMessage(channel="console", chat_id="console", text="x"))
    finally:
        await adapter.stop()
    assert failed.value.permanent


def test_runs_by_default_only_when_stdin_and_stdout_are_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ConsoleChannel.Config()
    controller, device = os.openpty()
    tty_in = os.fdopen(os.dup(device), "r")
    tty_out = os.fdopen(os.dup(device), "w")
    pipe_read, pipe_write = os.pipe()
    piped = os.fdopen(pipe_read, "r")
    try:
        monkeypatch.setattr(sys, "stdin", tty_in)
        monkeypatch.setattr(sys, "stdout", tty_out)
        assert ConsoleChannel.enabled_by_default(settings, {})
        monkeypatch.setattr(sys, "stdin", piped)
        assert not ConsoleChannel.enabled_by_default(settings, {})
        monkeypatch.setattr(sys, "stdin", tty_in)
        monkeypatch.setattr(sys, "stdout", io.StringIO())
        assert not ConsoleChannel.enabled_by_default(settings, {})
    finally:
        for stream in (tty_in, tty_out, piped):
            stream.close()
        for fd in (controller, device, pipe_write):
            os.close(fd)
    assert ConsoleChannel.Config().dm_policy == "open"
