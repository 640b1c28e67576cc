"""Streamed replies by message edits: the StreamedReply against the editing loop channel, then whole turns.

The first tests drive ``StreamedReply`` with text the test hands over chunk by chunk (so each step
is an event the test waits for) and a sink that sends straight through the channel; the others
run whole streamed turns through the host with the scripted model streaming its answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PLUGINS, idle, running, running_adapter
from edit_channel import EditingLoopChannel
from loop_channel import LoopPlatform
from refactorbot.channels import Delivery, FormattingRejected, SendFailed, split_text
from refactorbot.models import OutgoingMessage
from refactorbot.testing import ModelServer, Reply, loopback_config
from refactorbot_slice_communication.streaming import SURPLUS_PART, StreamedReply

INTERVAL = 0.2


class Chunks:
    """Text the test hands to the reply one chunk at a time; ``end()`` ends the turn."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    def push(self, text: str) -> None:
        self.queue.put_nowait(text)

    def end(self) -> None:
        self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[str]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk


class DirectSink:
    """Sends each part straight through the adapter and notes the ids recorded after each new part."""

    def __init__(self, adapter: EditingLoopChannel) -> None:
        self._adapter = adapter
        self.recorded: list[list[str]] = []

    def adapter(self, channel: str) -> EditingLoopChannel:
        return self._adapter

    async def send_part(self, channel: str, message: OutgoingMessage, tries: list[int]) -> list[str]:
        tries[0] += 1
        return await self._adapter.send(message)

    async def parts_sent(self, reply: StreamedReply) -> None:
        self.recorded.append(reply.ids)


@pytest.fixture
def adapter(platform: LoopPlatform) -> EditingLoopChannel:
    return EditingLoopChannel({"platform": platform.key, "limit": 40})  # type: ignore[attr-defined]


def streamed(adapter: EditingLoopChannel, **overrides: Any) -> tuple[StreamedReply, DirectSink]:
    sink = DirectSink(adapter)
    options: dict[str, Any] = {
        "interval": INTERVAL,
        "attempts": 3,
        "backoff": 0.01,
        "backoff_max": 0.05,
        "max_retry_after": 10.0,
        **overrides,
    }
    return StreamedReply(sink, "loopedit", "chat-1", "m-1", **options), sink


def chat_shows(platform: LoopPlatform, reply: StreamedReply) -> list[str]:
    return [platform.shown[i] for i in reply.ids]


@pytest.mark.asyncio
async def test_the_first_part_goes_out_when_text_starts_and_is_edited_as_it_grows_no_faster_than_the_interval(
    adapter: EditingLoopChannel, platform: LoopPlatform
) -> None:
    reply, sink = streamed(adapter)
    chunks = Chunks()
    consuming = asyncio.create_task(reply.consume(chunks))
    chunks.push("Hello")
    await platform.wait_sent(1)
    assert (platform.sent[0].text, platform.sent[0].reply_to) == ("Hello", "m-1")
    chunks.push(" there")
    await platform.wait_for(lambda: platform.edits)
    assert platform.edits[0][1] == "Hello there"
    assert platform.edits[0][3] - platform.attempt_times[0] >= INTERVAL, "the first edit waited the interval"
    for word in (" and", " more", " words"):
        chunks.push(word)
    await platform.wait_for(lambda: platform.edits[-1][1] == "Hello there and more words")
    chunks.push(" at the end.")
    chunks.end()
    await consuming
    assert await reply.finish("Hello there and more words at the end.") is None
    assert chat_shows(platform, reply) == ["Hello there and more words at the end."]
    times = [edit[3] for edit in platform.edits[:-1]]  # interim edits (the final one is not throttled)
    assert all(later - earlier >= INTERVAL for earlier, later in zip(times, times[1:], strict=False))
    assert len(platform.sent) == 1 and sink.recorded == [["p-1"]]


@pytest.mark.asyncio
async def test_past_the_limit_it_moves_to_a_new_message_with_the_reference_on_the_first_only(
    adapter: EditingLoopChannel, platform: LoopPlatform
) -> None:
    reply, sink = streamed(adapter)
    chunks = Chunks()
    consuming = asyncio.create_task(reply.consume(chunks))
    chunks.push("First paragraph, short.")
    await platform.wait_sent(1)
    chunks.push("\n\nSecond paragraph that passes the limit.")
    await platform.wait_sent(2)
    chunks.push("\n\nThird.")
    chunks.end()
    await consuming
    final = "First paragraph, short.\n\nSecond paragraph that passes the limit.\n\nThird."
    assert await reply.finish(final) is None
    assert chat_shows(platform, reply) == split_text(final, 40)
    assert [m.reply_to for m in platform.sent] == ["m-1"] + [None] * (len(platform.sent) - 1)
    assert sink.recorded[-1] == reply.ids and len(reply.ids) == len(split_text(final, 40))


@pytest.mark.asyncio
async def test_an_open_code_fence_is_closed_for_interim_edits(
    adapter: EditingLoopChannel, platform: LoopPlatform
) -> None:
    reply, _ = streamed(adapter, interval=INTERVAL)
    adapter.text_limit = 200
    chunks = Chunks()
    consuming = asyncio.create_task(reply.consume(chunks))
    chunks.push("Run:\n```python\nprint(1)")
    await platform.wait_sent(1)
    assert platform.sent[0].text == "Run:\n```python\nprint(1)\n```"
    chunks.push("\nprint(2)\n```\nDone.")
    chunks.end()
    await consuming
    assert await reply.finish("Run:\n```python\nprint(1)\nprint(2)\n```\nDone.") is None
    assert chat_shows(platform, reply) == ["Run:\n```python\nprint(1)\nprint(2)\n```\nDone."]


@pytest.mark.asyncio
async def test_a_rate_limited_interim_edit_is_skipped_and_the_next_waits_for_retry_after(
    adapter: EditingLoopChannel, platform: LoopPlatform
) -> None:
    reply, _ = streamed(adapter)
    platform.edit_failures.append(SendFailed("429 Too Many Requests", retry_after=0.5))
    chunks = Chunks()
    consuming = asyncio.create_task(reply.consume(chunks))
    chunks.push("one")
    await platform.wait_sent(1)
    chunks.push(" two")
    await platform.wait_for(lambda: platform.edit_attempts)
    chunks.push(" three")
    await platform.wait_for(lambda: platform.edits)
    refused, shown = platform.edit_attempts[0], platform.edits[0]
    assert shown[3] - refused[3] >= 0.5, "the next edit waited as long as the platform asked"
    assert shown[1] == "one two three"
    chunks.end()
    await consuming
    assert await reply.finish("one two three") is None


@pytest.mark.asyncio
async def test_the_final_edit_is_retried_after_retry_after_until_it_arrives(
    adapter: EditingLoopChannel, platform: LoopPlatform
) -> None:
    reply, _ = streamed(adapter, interval=30.0)  # no interim edit: only the final one
    chunks = Chunks()
    consuming = asyncio.create_task(reply.consume(chunks))
    chunks.push("partial")
    await platform.wait_sent(1)
    chunks.end()
    await consuming
    platform.edit_failures.extend([SendFailed("429", retry_after=0.3), SendFailed("502 Bad Gateway")])
    assert await reply.finish("partial, then complete") is None
    first, _, third = (attempt[3] for attempt in platform.edit_attempts)
    assert third - first >= 0.3 and len(platform.edit_attempts) == 3
    assert chat_shows(platform, reply) == ["partial, then complete"]


@pytest.mark.asyncio
async def test_refused_formatting_switches_the_rest_of_the_stream_to_plain_text(
    adapter: EditingLoopChannel, platform: LoopPlatform
) -> None:
    reply, _ = streamed(adapter, interval=30.0)
    adapter.text_limit = 200
    chunks = Chunks()
    consuming = asyncio.create_task(reply.consume(chunks))
    chunks.push("Some **bold")
    await platform.wait_sent(1)
    chunks.end()
    await consuming
    platform.edit_failures.append(FormattingRejected("can't parse entities"))
    assert await reply.finish("Some **bold** text and `code`.") is None
    (edit,) = platform.edits
    assert edit[1:3] == ("Some bold text and code.", "plain")
    assert chat_shows(platform, reply) == ["Some bold text and code."]


@pytest.mark.asyncio
async def test_a_final_edit_that_finally_fails_is_reported_with_its_reason(
    adapter: EditingLoopChannel, platform: LoopPlatform
) -> None:
    reply, _ = streamed(adapter, interval=30.0)
    chunks = Chunks()
    consuming = asyncio.create_task(reply.consume(chunks))
    chunks.push("partial")
    await platform.wait_sent(1)
    chunks.end()
    await consuming
    platform.edit_failures.append(SendFailed("400 message to edit not found", permanent=True))
    failure = await reply.finish("partial, then complete")
    assert failure == "the final text did not arrive: edit failed: 400 message to edit not found"
    assert chat_shows(platform, reply) == ["partial"]


@pytest.mark.asyncio
async def test_a_part_the_final_text_no_longer_needs_is_emptied(
    adapter: EditingLoopChannel, platform: LoopPlatform
) -> None:
    reply, _ = streamed(adapter, interval=30.0)
    chunks = Chunks()
    consuming = asyncio.create_task(reply.consume(chunks))
    text = "```\n" + "x" * 34 + "\n"  # 39 characters; with its interim closer it needs two parts of 40
    chunks.push(text)
    await platform.wait_sent(2)
    chunks.end()
    await consuming
    assert await reply.finish(text) is None
    assert chat_shows(platform, reply) == [text, SURPLUS_PART]


# -- whole turns through the host ---------------------------------------------------------------

ANSWER = (
    "Streaming starts with this first paragraph.\n\nThen a second one arrives, long enough to need a new"
    " message.\n\n```python\nprint('code in a fence')\n```\n\nAnd the last words."
)


def stream_config(model: ModelServer, platform: LoopPlatform, **channel: Any) -> dict[str, Any]:
    key = platform.key  # type: ignore[attr-defined]
    options = {"platform": key, "dm_policy": "open", "stream": True, "stream_interval": INTERVAL, **channel}
    return {
        "core": {"health_interval": 3600},
        **loopback_config(model),
        "slices": {"communication": {"send_backoff": 0.01, "channel_backoff": 0.05}},
        "channels": {"loop": {"enabled": False}, "loopedit": options},
    }


@pytest.mark.asyncio
async def test_a_streamed_turn_ends_with_the_full_text_shown_and_recorded_sent_with_every_id(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    model.script(Reply.text(ANSWER, chunks=8, chunk_delay=0.05))
    async with running(tmp_path, stream_config(model, platform, limit=90), [*PLUGINS, "edit_channel"]) as host:
        adapter = await running_adapter(host, "loopedit")
        assert await adapter.inject("stream please", message_id="m-1") is Delivery.ACCEPTED
        await idle(host)
        assert model.requests[0].get("stream") is True, "the turn streamed from the model"
        (row,) = (await host.call("communication.messages", direction="out")).data["items"]
        ids = row["platform_ids"]
        assert (row["status"], row["kind"], row["text"], row["parts"]) == ("sent", "reply", ANSWER, len(ids))
        assert [platform.shown[i] for i in ids] == split_text(ANSWER, 90)
        assert [m.reply_to for m in platform.sent] == ["m-1"] + [None] * (len(platform.sent) - 1)
        (inbound,) = (await host.call("communication.messages", direction="in")).data["items"]
        assert inbound["status"] == "answered"
        info = (await host.call("communication.channels")).data["channels"]
        streaming = {c["name"]: (c["supports_edit"], c["streaming"]) for c in info}
        assert streaming == {"loop": (False, False), "loopedit": (True, True)}
        history = (await host.call("session.list", channel="loopedit")).data
        assert len(history) == 1


@pytest.mark.asyncio
async def test_a_part_that_cannot_be_sent_leaves_the_streamed_reply_failed_with_the_reason(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    model.script(Reply.text(ANSWER, chunks=4, chunk_delay=0.05))
    platform.send_failures.extend([None, SendFailed("403 bot was blocked by the user", permanent=True)])
    async with running(tmp_path, stream_config(model, platform, limit=90), [*PLUGINS, "edit_channel"]) as host:
        adapter = await running_adapter(host, "loopedit")
        await adapter.inject("stream please", message_id="m-1")
        await idle(host)
        (row,) = (await host.call("communication.messages", direction="out")).data["items"]
        assert row["status"] == "failed" and "403 bot was blocked by the user" in row["detail"]
        assert row["platform_ids"] == ["p-1"] and len(platform.sent) == 1, "the second part never went out"
        channels = {c["name"]: c for c in (await host.call("communication.channels")).data["channels"]}
        assert channels["loopedit"]["failed"] == 1


@pytest.mark.asyncio
async def test_stream_on_a_channel_that_cannot_edit_is_ignored_with_a_note(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform, caplog: pytest.LogCaptureFixture
) -> None:
    config = stream_config(model, platform)
    config["channels"] = {"loop": {"platform": platform.key, "dm_policy": "open", "stream": True}}  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, "refactorbot.slice.communication"):
        async with running(tmp_path, config) as host:
            adapter = await running_adapter(host)
            await adapter.inject("hi", message_id="m-1")
            await idle(host)
            assert platform.texts() == ["echo: hi"]
            (info,) = (await host.call("communication.channels")).data["channels"]
            assert (info["supports_edit"], info["streaming"]) == (False, False)
    notes = [r.getMessage() for r in caplog.records if "stream = true ignored" in r.getMessage()]
    assert notes == ["channel loop: stream = true ignored: the channel cannot edit messages"]
