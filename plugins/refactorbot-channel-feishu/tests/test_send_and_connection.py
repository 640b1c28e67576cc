"""Replies (posts, plain fallback, errors, tokens, edits) and the long connection (acks, pings, reconnects)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from feishu_fixtures import env_for, outgoing
from refactorbot.channels import FormattingRejected, SendFailed
from refactorbot.testing import Inbox
from refactorbot.testing.feishu import FeishuServer, feishu_error, message_event
from refactorbot_channel_feishu import frames
from refactorbot_channel_feishu.channel import FeishuChannel
from refactorbot_channel_feishu.post import markdown_to_post

# -- replies ---------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_reply_answers_its_message_and_renders_markdown_as_a_post(ws_channel: Any) -> None:
    adapter, _, feishu = ws_channel
    inbound = message_event(chat_id="oc_room", sender_open_id="ou_alice", text="hi", message_id="om_in1")
    feishu.record_inbound(inbound)
    ids = await adapter.send(outgoing("# Plan\n\n**bold** and [docs](https://example.com)", reply_to="om_in1"))
    rest = await adapter.send(outgoing("```python\nprint(1)\n```", chat_id="oc_room"))
    first, second = feishu.wait_for_messages(2)
    assert ids == [first["message_id"]] and rest == [second["message_id"]]
    assert (first["chat_id"], first["parent_id"], first["msg_type"]) == ("oc_room", "om_in1", "post")
    assert first["content"]["zh_cn"]["content"] == [
        [{"tag": "text", "text": "Plan", "style": ["bold"]}],
        [],
        [
            {"tag": "text", "text": "bold", "style": ["bold"]},
            {"tag": "text", "text": " and "},
            {"tag": "a", "text": "docs", "href": "https://example.com"},
        ],
    ]
    assert second["parent_id"] is None
    assert second["content"]["zh_cn"]["content"] == [[{"tag": "code_block", "text": "print(1)", "language": "PYTHON"}]]


def test_markdown_to_post_keeps_every_word() -> None:
    post = markdown_to_post("- one _two_ ~~three~~ `four`\n\n---\n1. five ![img](https://e.com/a.png) [x](relative)")
    paragraphs = post["zh_cn"]["content"]
    assert paragraphs[0] == [
        {"tag": "text", "text": "• one "},
        {"tag": "text", "text": "two", "style": ["italic"]},
        {"tag": "text", "text": " "},
        {"tag": "text", "text": "three", "style": ["lineThrough"]},
        {"tag": "text", "text": " "},
        {"tag": "text", "text": "four"},
    ]
    assert paragraphs[2] == [{"tag": "hr"}]
    assert paragraphs[3][1] == {"tag": "a", "text": "img", "href": "https://e.com/a.png"}
    assert "".join(e["text"] for e in paragraphs[3][2:]) == " [x](relative)"  # not a URL Feishu takes: kept


@pytest.mark.asyncio
async def test_a_refused_post_is_formatting_rejected_and_plain_text_goes_through(ws_channel: Any) -> None:
    adapter, _, feishu = ws_channel
    feishu.script(feishu_error(230001, "invalid content: unknown post element"))
    with pytest.raises(FormattingRejected, match="230001"):
        await adapter.send(outgoing("**x**"))
    ids = await adapter.send(outgoing(adapter.plain("**x**"), plain=True))
    (sent,) = feishu.wait_for_messages(1)
    assert ids == [sent["message_id"]] and (sent["msg_type"], sent["content"]) == ("text", {"text": "x"})


@pytest.mark.asyncio
async def test_rate_limits_honour_the_reset_header(ws_channel: Any) -> None:
    adapter, _, feishu = ws_channel
    feishu.script(feishu_error(99991400, "request trigger frequency limit", 429, {"x-ogw-ratelimit-reset": "7"}))
    with pytest.raises(SendFailed) as limited:
        await adapter.send(outgoing("hi"))
    assert (limited.value.retry_after, limited.value.permanent) == (7.0, False)
    feishu.script(feishu_error(230020, "This operation triggers the frequency limit.", 400))
    with pytest.raises(SendFailed) as chat_limited:
        await adapter.send(outgoing("hi"))
    assert chat_limited.value.retry_after == 1.0 and not chat_limited.value.permanent


@pytest.mark.asyncio
async def test_server_errors_are_retryable_and_refusals_permanent(ws_channel: Any) -> None:
    adapter, _, feishu = ws_channel
    feishu.script(feishu_error(1500, "internal error", 500))
    with pytest.raises(SendFailed) as broken:
        await adapter.send(outgoing("hi"))
    assert not broken.value.permanent and broken.value.retry_after is None
    feishu.script(feishu_error(230002, "The bot can not be outside the group."))
    with pytest.raises(SendFailed, match="230002") as refused:
        await adapter.send(outgoing("hi", plain=True))
    assert refused.value.permanent
    with pytest.raises(SendFailed, match="230011") as gone:  # replying to a message Feishu does not know
        await adapter.send(outgoing("hi", reply_to="om_unknown"))
    assert gone.value.permanent
    assert feishu.messages == []


@pytest.mark.asyncio
async def test_a_retried_part_is_posted_once(ws_channel: Any) -> None:
    adapter, _, feishu = ws_channel
    message = outgoing("only once")
    first = await adapter.send(message)
    again = await adapter.send(message)  # the slice retries with the same message after a lost answer
    assert first == again and len(feishu.messages) == 1


@pytest.mark.asyncio
async def test_the_token_is_cached_renewed_before_expiry_and_after_an_invalid_answer(feishu: FeishuServer) -> None:
    adapter = FeishuChannel(
        {"api_base": feishu.url, "mode": "webhook"}, env=env_for(feishu, FEISHU_VERIFICATION_TOKEN="t")
    )
    adapter.bind(Inbox())
    await adapter.start()
    try:
        assert feishu.token_requests == 1  # start: one token for the bot info
        for i in range(3):
            await adapter.send(outgoing(f"m{i}"))
        assert feishu.token_requests == 1
        feishu.expire_tokens()  # Feishu ended the token early: code 99991663, renewed once
        await adapter.send(outgoing("after expiry"))
        assert feishu.token_requests == 2
        feishu.token_ttl = 200  # less than token_refresh (300 s) left at once: renewed on each use
        feishu.expire_tokens()
        await adapter.send(outgoing("short-lived"))
        count = feishu.token_requests
        await adapter.send(outgoing("renewed"))
        assert feishu.token_requests == count + 1
    finally:
        await adapter.stop()
    assert feishu.texts() == ["m0", "m1", "m2", "after expiry", "short-lived", "renewed"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({}, "FEISHU_APP_ID is not set"),
        ({"FEISHU_APP_ID": "cli_loopback0001"}, "FEISHU_APP_SECRET is not set"),
        ({"FEISHU_APP_ID": "cli_loopback0001", "FEISHU_APP_SECRET": "wrong-secret"}, "10014"),
    ],
)
async def test_start_fails_with_one_line(feishu: FeishuServer, env: dict[str, str], reason: str) -> None:
    adapter = FeishuChannel({"api_base": feishu.url}, env=env)
    with pytest.raises(Exception, match=reason) as failed:
        await adapter.start()
    assert "\n" not in str(failed.value) and "wrong-secret" not in str(failed.value)


@pytest.mark.asyncio
async def test_edit_replaces_a_sent_message(ws_channel: Any) -> None:
    adapter, _, feishu = ws_channel
    assert adapter.supports_edit
    (message_id,) = await adapter.send(outgoing("draft"))
    await adapter.edit("oc_chat1", message_id, "**final**")
    await adapter.edit("oc_chat1", message_id, "plain **stars**", text_format="plain")
    assert feishu.edits == [
        {"message_id": message_id, "text": "final"},
        {"message_id": message_id, "text": "plain **stars**"},
    ]
    feishu.script(feishu_error(230001, "invalid content"))
    with pytest.raises(FormattingRejected):
        await adapter.edit("oc_chat1", message_id, "**x**")
    with pytest.raises(SendFailed, match="230011"):
        await adapter.edit("oc_chat1", "om_missing", "x")


def test_enabled_by_default_only_with_app_credentials() -> None:
    settings = FeishuChannel.Config()
    assert FeishuChannel.enabled_by_default(settings, {"FEISHU_APP_ID": "a", "FEISHU_APP_SECRET": "b"})
    assert not FeishuChannel.enabled_by_default(settings, {"FEISHU_APP_ID": "a"})


# -- the long connection -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_events_are_acknowledged_and_a_split_payload_is_joined(ws_channel: Any) -> None:
    adapter, inbox, feishu = ws_channel
    await asyncio.to_thread(feishu.wait_until, lambda: feishu.pings >= 1)
    event = message_event(chat_id="oc_ws", sender_open_id="ou_bob", text="split " * 50, message_id="om_ws1")
    key = await asyncio.to_thread(feishu.push_event, event, parts=3)
    ack = await asyncio.to_thread(feishu.wait_for_ack, key)
    assert ack["code"] == 200 and ack["headers"]["biz_rt"].isdigit()
    (message,) = inbox.messages
    assert (message.chat_id, message.message_id, message.text) == ("oc_ws", "om_ws1", ("split " * 50).strip())


@pytest.mark.asyncio
async def test_a_busy_host_is_told_to_feishu_with_a_failing_ack(ws_channel: Any) -> None:
    from refactorbot.channels import Delivery

    adapter, inbox, feishu = ws_channel
    inbox.answer = Delivery.BUSY
    key = await asyncio.to_thread(
        feishu.push_event, message_event(chat_id="oc_ws", sender_open_id="ou_bob", text="x", message_id="om_busy")
    )
    assert (await asyncio.to_thread(feishu.wait_for_ack, key))["code"] == 500


@pytest.mark.asyncio
async def test_a_dropped_connection_is_reopened(ws_channel: Any) -> None:
    adapter, inbox, feishu = ws_channel
    await asyncio.to_thread(feishu.drop)
    await asyncio.to_thread(feishu.wait_until, lambda: feishu.connected == 1 and feishu.connections == 2)
    key = await asyncio.to_thread(
        feishu.push_event, message_event(chat_id="oc_ws", sender_open_id="ou_bob", text="back", message_id="om_back")
    )
    await asyncio.to_thread(feishu.wait_for_ack, key)
    assert [m.text for m in inbox.messages] == ["back"]
    assert not adapter.failure().done()


@pytest.mark.asyncio
async def test_reconnects_back_off_and_then_the_channel_reports_failure(feishu: FeishuServer) -> None:
    adapter = FeishuChannel(
        {"api_base": feishu.url, "reconnect_backoff": 0.05, "reconnect_backoff_max": 0.4, "reconnect_attempts": 4},
        env=env_for(feishu),
    )
    adapter.bind(Inbox())
    await adapter.start()
    try:
        before = feishu.endpoint_requests
        feishu.refuse_connections = True
        await asyncio.to_thread(feishu.drop)
        reason = await asyncio.wait_for(adapter.failure(), 60)
    finally:
        await adapter.stop()
    assert reason.startswith("long connection lost and 4 reconnects failed") and "system busy" in reason
    attempts = [r.at for r in feishu.requests if r.path == "/callback/ws/endpoint"][before:]
    assert len(attempts) == 4  # each after a growing wait: 0.05, 0.1, 0.2, 0.4 s (±25 %)
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[-1] >= 0.75 * 0.4


@pytest.mark.asyncio
async def test_a_refused_first_connection_fails_start(feishu: FeishuServer) -> None:
    feishu.refuse_connections = True
    adapter = FeishuChannel({"api_base": feishu.url}, env=env_for(feishu))
    with pytest.raises(Exception, match="system busy"):
        await adapter.start()
    await adapter.stop()


def test_the_frame_codec_agrees_with_protobuf() -> None:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="pbbp2.proto", package="pbbp2", syntax="proto2")
    header = proto.message_type.add(name="Header")
    label_required, label_optional, label_repeated = 2, 1, 3
    header.field.add(name="key", number=1, type=9, label=label_required)
    header.field.add(name="value", number=2, type=9, label=label_required)
    frame = proto.message_type.add(name="Frame")
    for name, number, kind, label in [
        ("SeqID", 1, 4, label_required),
        ("LogID", 2, 4, label_required),
        ("service", 3, 5, label_required),
        ("method", 4, 5, label_required),
        ("payload_encoding", 6, 9, label_optional),
        ("payload_type", 7, 9, label_optional),
        ("payload", 8, 12, label_optional),
        ("LogIDNew", 9, 9, label_optional),
    ]:
        frame.field.add(name=name, number=number, type=kind, label=label)
    frame.field.add(name="headers", number=5, type=11, type_name=".pbbp2.Header", label=label_repeated)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    Frame = message_factory.GetMessageClass(pool.FindMessageTypeByName("pbbp2.Frame"))

    ours = frames.Frame(
        seq_id=2**40 + 3,
        log_id=17,
        service=-5,
        method=1,
        headers=[("type", "event"), ("message_id", "m-1"), ("type", "dup")],
        payload='{"k": "飞书"}'.encode(),
        log_id_new="log-new",
    )
    theirs = Frame()
    theirs.ParseFromString(ours.encode())
    assert (theirs.SeqID, theirs.LogID, theirs.service, theirs.method) == (2**40 + 3, 17, -5, 1)
    assert [(h.key, h.value) for h in theirs.headers] == ours.headers
    assert (theirs.payload, theirs.LogIDNew) == (ours.payload, "log-new")
    back = frames.Frame.decode(theirs.SerializeToString())
    assert back == ours
    for broken in (b"\x08", b"\x08\x01", b"\x0a\x05ab", b"\x07"):
        with pytest.raises(frames.FrameError):
            frames.Frame.decode(broken)
    assert json.loads(back.payload or b"")["k"] == "飞书"
