"""Streamed replies: the first part is sent once text starts, then edited (throttled) as the answer grows.

One ``StreamedReply`` per streamed turn. The chat turn's text arrives from ``MasterChat``; a
flusher task shows it at most once per ``interval``: it renders the text so far (a code fence
still open is closed for the interim render: ``render_partial``), splits it at the channel's limit, edits the parts
whose text changed and sends the new ones (the reply reference on the first only). When the
turn ends, a final flush shows the whole text, retried until it arrives or finally fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from refactorbot import ChannelAdapter, FormattingRejected, OutgoingMessage, SendFailed

log = logging.getLogger("refactorbot.slice.communication")

#: What a part the final text no longer needs is edited to (a message cannot be taken back).
SURPLUS_PART = "…"

_TAKES_FORMAT: dict[type[ChannelAdapter], bool] = {}


def edit_takes_format(adapter: ChannelAdapter) -> bool:
    """Return whether the adapter's ``edit`` accepts ``text_format`` (adapters written before it do not)."""
    cls = type(adapter)
    known = _TAKES_FORMAT.get(cls)
    if known is None:
        try:
            parameters = inspect.signature(cls.edit).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        known = _TAKES_FORMAT[cls] = "text_format" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )
    return known


class Sink(Protocol):
    """What a streamed reply needs from the slice: the adapter, a retried send, and its record."""

    def adapter(self, channel: str) -> ChannelAdapter: ...

    async def send_part(self, channel: str, message: OutgoingMessage, tries: list[int]) -> list[str]: ...

    async def parts_sent(self, reply: StreamedReply) -> None: ...


class StreamedReply:
    """One reply streamed into a chat by message edits."""

    def __init__(
        self,
        sink: Sink,
        channel: str,
        chat_id: str,
        reply_to: str | None,
        *,
        interval: float,
        attempts: int,
        backoff: float,
        backoff_max: float,
        max_retry_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.channel = channel
        self.chat_id = chat_id
        self.reply_to = reply_to
        self.interval = interval
        self.attempts = attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.clock = clock
        #: The Markdown received so far.
        self.text = ""
        #: Platform ids of the messages sent, one list per part (a platform may answer several).
        self.part_ids: list[list[str]] = []
        #: What each part shows now.
        self.shown: list[str] = []
        #: Every attempt to send or edit (for the log).
        self.tries = [0]
        self.edits = 0
        #: The platform refused the formatting: the rest is shown plain.
        self.plain = False
        #: Set by the slice: the log row recorded at the first part.
        self.row: int | None = None
        self._changed = asyncio.Event()
        self._done = False
        self._next_flush = 0.0
        self._flusher: asyncio.Task[None] | None = None
        self._failure: str | None = None  # an interim send that finally failed: the stream stops showing

    @property
    def ids(self) -> list[str]:
        """Return every platform id sent, in order."""
        return [i for ids in self.part_ids for i in ids]

    @property
    def started(self) -> bool:
        """Return whether a first part was sent."""
        return bool(self.part_ids)

    # -- consuming the turn's text ---------------------------------------------------------------

    async def consume(self, chunks: AsyncIterator[str]) -> None:
        """Read the turn's text, showing it as it grows; return when the turn's text ended."""
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(), name=f"stream {self.chat_id}")
        try:
            async for chunk in chunks:
                if chunk:
                    self.text += chunk
                    self._changed.set()
        finally:
            self._done = True
            self._changed.set()
            await self._stop_flusher()

    async def _stop_flusher(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is None:
            return
        if flusher.done() or asyncio.current_task() is None:
            return
        # The flusher notices _done and returns after the edit it is doing (interim edits are
        # not retried, so that is quick); a cancelled turn cancels it.
        try:
            await asyncio.shield(flusher)
        except asyncio.CancelledError:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await flusher
            raise

    async def _flush_loop(self) -> None:
        while not self._done:
            await self._changed.wait()
            if self._done:
                return
            wait = self._next_flush - self.clock()
            if wait > 0:
                # Throttled: wait for the interval, or the end of the stream (the final flush follows).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        while not self._done:
                            self._changed.clear()
                            await self._changed.wait()
                if self._done:
                    return
            self._changed.clear()
            try:
                await self._show(final=False)
            except SendFailed as exc:  # a new part could not be sent: stop streaming, the final flush tells
                self._failure = exc.reason
                log.info("channel %s: streamed reply stopped showing: %s", self.channel, exc.reason)
                return
            self._next_flush = max(self._next_flush, self.clock() + self.interval)

    # -- showing ---------------------------------------------------------------------------------

    def _render(self, adapter: ChannelAdapter, markdown: str, final: bool) -> list[str]:
        rendered = adapter.render(markdown) if final else adapter.render_partial(markdown)
        if self.plain:
            rendered = adapter.plain(rendered)
        return [p for p in adapter.split(rendered) if p.strip()]

    async def _show(self, *, final: bool) -> None:
        """Bring the chat up to the text: edit changed parts, send new ones (interim: one try per edit)."""
        adapter = self.sink.adapter(self.channel)
        parts = self._render(adapter, self.text, final)
        if final and len(parts) < len(self.shown):
            parts += [SURPLUS_PART] * (len(self.shown) - len(parts))
        for index, part in enumerate(parts):
            if index < len(self.shown):
                if self.shown[index] != part:
                    await self._edit(index, part, final=final)
            else:
                message = OutgoingMessage(
                    channel=self.channel,
                    chat_id=self.chat_id,
                    text=part,
                    reply_to=self.reply_to if index == 0 else None,
                    text_format="plain" if self.plain else "platform",
                )
                ids = await self.sink.send_part(self.channel, message, self.tries)
                if not ids:
                    raise SendFailed(f"channel {self.channel} returned no message id for part {index + 1}")
                self.part_ids.append(ids)
                self.shown.append(part)
                await self.sink.parts_sent(self)

    async def _edit(self, index: int, text: str, *, final: bool) -> None:
        """Edit part ``index``; interim edits that fail are skipped (a rate limit pushes the next flush back).

        The final edit is retried like a send (``Retry-After`` honoured); refused formatting
        switches the rest of the reply to plain text; an edit that finally fails raises ``SendFailed``.
        """
        attempt = 0
        while True:
            attempt += 1
            self.tries[0] += 1
            adapter = self.sink.adapter(self.channel)
            message_id = self.part_ids[index][-1]
            try:
                if self.plain and edit_takes_format(adapter):
                    await adapter.edit(self.chat_id, message_id, text, text_format="plain")
                else:
                    await adapter.edit(self.chat_id, message_id, text)
                self.shown[index] = text
                self.edits += 1
                return
            except FormattingRejected as exc:
                if self.plain:
                    failure = SendFailed(f"edit refused even as plain text: {exc.reason}", permanent=True)
                else:
                    log.info("channel %s refused the formatting of an edit (%s); plain text", self.channel, exc.reason)
                    self.plain = True
                    text = adapter.plain(text)
                    attempt -= 1
                    continue
            except SendFailed as exc:
                failure = exc
            except Exception as exc:  # the adapter broke unexpectedly: like a network error
                failure = SendFailed(f"{type(exc).__name__}: {exc}".splitlines()[0][:500])
            if not final:
                if failure.retry_after is not None:
                    self._next_flush = self.clock() + min(failure.retry_after, self.max_retry_after)
                log.info("channel %s: interim edit skipped: %s", self.channel, failure.reason)
                return
            if failure.permanent or attempt >= self.attempts:
                suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise SendFailed(f"edit failed: {failure.reason}{suffix}", permanent=True)
            if failure.retry_after is not None:
                if failure.retry_after > self.max_retry_after:
                    raise SendFailed(
                        f"edit failed: {failure.reason}; the platform asked to wait {failure.retry_after:g}s,"
                        f" more than max_retry_after ({self.max_retry_after:g}s)",
                        permanent=True,
                    )
                delay = failure.retry_after
            else:
                delay = min(self.backoff * 2 ** (attempt - 1), self.backoff_max)
            await asyncio.sleep(delay)

    async def finish(self, text: str) -> str | None:
        """Show ``text`` (the whole reply) in full; return None once it arrived, else why it did not."""
        self.text = text
        if self._failure is not None:
            return self._failure
        try:
            await self._show(final=True)
        except SendFailed as exc:
            return f"the final text did not arrive: {exc.reason}"
        return None
