"""Traces of a chat turn: each part of the reply is a ``send <channel>`` span in the turn's trace.

A reply sent once its turn ended is a sibling of ``chat_turn <channel>``, both children of the
message's ``receive <channel>`` span.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import PLUGINS, host_config, idle, running, running_adapter
from loop_channel import LoopPlatform
from refactorbot import Delivery, SendFailed
from refactorbot.testing import ModelServer, Reply

ANSWER = "First paragraph of the answer.\n\nSecond paragraph, long enough for its own part.\n\nThird and last."


async def spans_of(host: Any, root: str) -> list[dict[str, Any]]:
    """Return the spans of the newest trace whose root span is named ``root`` (from the span store)."""
    await host.bus.stop()  # every delivery's span ended: the bus drains on stop
    await host.bus.start()
    listed = await host.call("traces.recent", name_contains=root)
    assert listed.success, listed.error_message
    assert listed.data["traces"], f"no trace named {root}"
    detail = await host.call("traces.trace", trace_id=listed.data["traces"][0]["trace_id"])
    assert detail.success, detail.error_message
    spans: list[dict[str, Any]] = detail.data["spans"]
    return spans


@pytest.mark.asyncio
async def test_each_part_of_a_reply_and_each_retry_is_a_send_span_of_the_turn(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    model.script(Reply.text(ANSWER))
    platform.send_failures.extend([None, SendFailed("platform busy"), None, None])
    config = host_config(model, platform, loop={"dm_policy": "open", "limit": 40})
    async with running(tmp_path, config, [*PLUGINS, "refactorbot_otel.plugin"]) as host:
        adapter = await running_adapter(host)
        assert await adapter.inject("hello", message_id="m-1") is Delivery.ACCEPTED
        await platform.wait_sent(3)
        await idle(host)

        spans = await spans_of(host, "receive loop")
        by_id = {s["span_id"]: s for s in spans}
        turn = next(s for s in spans if s["name"] == "chat_turn loop")
        assert by_id[turn["parent_id"]]["name"] == "receive loop"
        sends = sorted((s for s in spans if s["name"] == "send loop"), key=lambda s: s["offset_ms"])
        assert len(sends) == 4  # three parts, the second sent twice
        for send in sends:
            assert send["kind"] == "producer"
            assert send["attributes"]["refactorbot.channel"] == "loop"
            assert send["attributes"]["refactorbot.text_format"] == "platform"
            ancestors = []
            parent = send["parent_id"]
            while parent in by_id:
                ancestors.append(by_id[parent]["name"])
                parent = by_id[parent]["parent_id"]
            assert ancestors == ["receive loop"], ancestors  # sent once the turn ended, in its delivery
        assert [s["attributes"]["refactorbot.send.attempt"] for s in sends] == [1, 1, 2, 1]
        assert [s["status"] for s in sends] == ["unset", "error", "unset", "unset"]
        assert sends[1]["attributes"]["error.type"] == "SendFailed"
        assert [s["attributes"].get("refactorbot.message_ids") for s in sends] == [["p-1"], None, ["p-2"], ["p-3"]]
