"""The ``console`` channel: lines typed into ``refactorbot serve``'s terminal are messages; replies are printed.

Input is read by one daemon thread per input stream (a blocking ``readline`` works for a
terminal, a pipe and a file alike, and cannot hold up the event loop); each line is handed to the
host on the loop. Replies go to standard output, one write per message; the server's log goes to
standard error, so ``2>serve.log`` keeps the conversation clean. At end of input (Ctrl-D, or a
pipe closed) the channel stops reading but keeps printing what is sent to it.

The channel runs when standard input and standard output are both a terminal (``refactorbot
serve`` in the foreground), or when ``enabled = true`` says so (reading a pipe, say).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from pydantic import ConfigDict, Field
from refactorbot import ChannelAdapter, ChannelConfig, Delivery, DmPolicy, IncomingMessage, OutgoingMessage, SendFailed

log = logging.getLogger("refactorbot.channel.console")

#: The longest line taken as one message; longer input is cut into several.
MAX_LINE = 32_000


class ConsoleConfig(ChannelConfig):
    """``[channels.console]`` (every field also ``RB_CONSOLE_<FIELD>``)."""

    model_config = ConfigDict(extra="forbid")

    dm_policy: DmPolicy = Field("open", description="the person at the terminal is the owner")
    chat_id: str = Field("console", min_length=1, max_length=200, description="the chat the terminal is")
    sender_id: str = Field("console", min_length=1, max_length=200, description="who types into it")
    sender_name: str | None = Field(None, max_length=200)


class _Reader:
    """The one thread reading an input stream; it hands each line to the adapter attached at the time."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.target: ConsoleChannel | None = None
        self.closed = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="console-input", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                line = self.stream.readline(MAX_LINE)
            except (OSError, ValueError):  # the stream was closed under us
                line = ""
            if not line:
                with self.lock:
                    self.closed = True
                    target = self.target
                if target is not None:
                    target._input_ended()
                return
            with self.lock:
                target = self.target
            if target is not None:
                target._line(line.rstrip("\r\n"))


_READERS: dict[int, _Reader] = {}
_READERS_LOCK = threading.Lock()


def _reader_for(stream: IO[str]) -> _Reader:
    with _READERS_LOCK:
        reader = _READERS.get(id(stream))
        if reader is None or (reader.stream is not stream):
            reader = _READERS[id(stream)] = _Reader(stream)
        return reader


class ConsoleChannel(ChannelAdapter):
    """The terminal of ``refactorbot serve``."""

    name = "console"
    Config = ConsoleConfig
    text_limit = 100_000

    def __init__(self, config: Any = None, *, env: Mapping[str, str] | None = None) -> None:
        super().__init__(config, env=env)
        self.settings: ConsoleConfig
        #: The streams used: standard input and output unless a test or an embedder sets others.
        self.input: IO[str] = sys.stdin
        self.output: IO[str] = sys.stdout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: _Reader | None = None
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-{time.time_ns()}"

    @classmethod
    def enabled_by_default(cls, settings: ChannelConfig, env: Mapping[str, str]) -> bool:
        """Run when standard input and output are both a terminal (``refactorbot serve`` in the foreground)."""
        return _isatty(sys.stdin) and _isatty(sys.stdout)

    @property
    def interactive(self) -> bool:
        """Return whether the output is a terminal (replies are then set apart by blank lines)."""
        return _isatty(self.output)

    async def start(self) -> None:
        """Start handing typed lines to the host."""
        self._loop = asyncio.get_running_loop()
        reader = _reader_for(self.input)
        with reader.lock:
            reader.target = self
            ended = reader.closed
        self._reader = reader
        if ended:
            log.info("console: input has ended; the channel only prints")

    async def stop(self) -> None:
        """Stop handing lines over (the reading thread stays, blocked on its next line, for a later start)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            with reader.lock:
                if reader.target is self:
                    reader.target = None
        self._loop = None

    def _line(self, text: str) -> None:
        """Hand one line to the host, from the reading thread; wait until it was taken."""
        loop = self._loop
        if loop is None or not text.strip():
            return
        message = IncomingMessage(
            channel=self.name,
            chat_id=self.settings.chat_id,
            sender_id=self.settings.sender_id,
            sender_name=self.settings.sender_name,
            text=text,
            message_id=f"{self._prefix}-{next(self._ids)}",
        )
        try:
            delivery = asyncio.run_coroutine_threadsafe(self.deliver(message), loop).result(timeout=60)
        except Exception as exc:  # the loop is closing, or the host refused in an unexpected way
            log.warning("console: a line was not taken: %s: %s", type(exc).__name__, exc)
            return
        if delivery is Delivery.BUSY:
            self._write("(busy: wait for the answer before typing more)\n")
        elif delivery is Delivery.UNAVAILABLE:
            self._write("(the server is stopping)\n")

    def _input_ended(self) -> None:
        log.info("console: input has ended; the channel only prints")

    def _write(self, text: str) -> None:
        with self._write_lock:
            self.output.write(text)
            self.output.flush()

    async def send(self, message: OutgoingMessage) -> list[str]:
        """Print one message (to another chat than the terminal's: with ``[chat]`` in front)."""
        text = message.text if message.text.endswith("\n") else message.text + "\n"
        if message.chat_id != self.settings.chat_id:
            text = f"[{message.chat_id}] {text}"
        if self.interactive:
            text = "\n" + text
        try:
            await asyncio.to_thread(self._write, text)
        except (OSError, ValueError) as exc:  # a closed stream or a broken pipe
            raise SendFailed(f"console output is closed: {type(exc).__name__}", permanent=True) from None
        return [f"{self._prefix}-out-{next(self._ids)}"]


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
