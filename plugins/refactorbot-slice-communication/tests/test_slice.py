"""The communication slice with real turns: agent and session slices, the loopback model, the loop channel."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import host_config, idle, running, running_adapter, until
from loop_channel import LoopChannel, LoopPlatform
from refactorbot.channels import ChannelError, Delivery, FormattingRejected, SendFailed, markdown_to_plain
from refactorbot.testing import ModelServer, Reply, build_host, plugin_of

ANSWER = (
    "Here is the first paragraph of the answer.\n\nAnd a second paragraph that is long enough to need"
    " another message of its own.\n\nDone."
)


def last_user(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


async def log(host: Any, **filters: Any) -> list[dict[str, Any]]:
    response = await host.call("communication.messages", **filters)
    assert response.success, response.error_message
    return response.data["items"]


async def sessions(host: Any, chat_id: str) -> list[dict[str, Any]]:
    response = await host.call("session.list", channel="loop")
    assert response.success, response.error_message
    return [s for s in response.data if s["chat_id"] == chat_id]


# -- turns ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_message_is_answered_on_its_chat_split_with_the_reference_on_the_first_part(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    model.script(Reply.text(ANSWER))
    async with running(tmp_path, host_config(model, platform, loop={"dm_policy": "open", "limit": 60})) as host:
        adapter = await running_adapter(host)
        assert await adapter.inject("hello", chat_id="chat-7", message_id="m-1") is Delivery.ACCEPTED
        await until(lambda: platform.texts("chat-7") and "Done." in platform.texts("chat-7")[-1])
        await idle(host)
        sent = platform.sent
        assert {m.chat_id for m in sent} == {"chat-7"}
        assert len(sent) == 3 and all(len(m.text) <= adapter.text_limit for m in sent)
        assert "".join(m.text for m in sent) == ANSWER
        assert [m.reply_to for m in sent] == ["m-1", None, None]
        assert platform.typing == ["chat-7"]
        rows = await log(host, chat_id="chat-7")
        (out,) = [r for r in rows if r["direction"] == "out"]
        (inbound,) = [r for r in rows if r["direction"] == "in"]
        assert (inbound["status"], inbound["text"], inbound["message_id"]) == ("answered", "hello", "m-1")
        assert (out["status"], out["parts"], out["kind"], out["in_reply_to"]) == ("sent", 3, "reply", inbound["id"])
        assert out["platform_ids"] == ["p-1", "p-2", "p-3"] and out["text"] == ANSWER
        assert "RAW-PAYLOAD-MARKER" not in str(rows), "the raw platform payload never reaches the log"
        (session,) = await sessions(host, "chat-7")
        assert session["user_id"] == "alice"
    assert last_user(model.requests[0]) == "hello"


@pytest.mark.asyncio
async def test_a_redelivery_runs_one_turn_even_after_a_restart(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    config = host_config(model, platform, loop={"dm_policy": "open"})
    async with running(tmp_path, config) as host:
        adapter = await running_adapter(host)
        assert await adapter.inject("hi", message_id="m-1") is Delivery.ACCEPTED
        assert await adapter.inject("hi", message_id="m-1") is Delivery.DUPLICATE
        await platform.wait_sent(1)
        await idle(host)
        status = (await host.call("communication.status")).data
        # two arrivals (one a duplicate), the claim of the turn, the reply's outcome
        assert status["writes_committed"] == 4 and 1 <= status["write_transactions"] <= 4
    async with running(tmp_path, config) as host:
        adapter = await running_adapter(host)
        assert await adapter.inject("hi", message_id="m-1") is Delivery.DUPLICATE
        channels = (await host.call("communication.channels")).data["channels"]
        assert channels[0]["duplicates"] == 2 and channels[0]["inbound"] == 1
    assert len(model.requests) == 1, [[m["content"] for m in r["messages"]] for r in model.requests]
    assert platform.texts() == ["echo: hi"]


@pytest.mark.asyncio
async def test_the_same_message_arriving_several_times_at_once_runs_one_turn(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    config = host_config(model, platform, loop={"dm_policy": "open"})
    async with running(tmp_path, config) as host:
        adapter = await running_adapter(host)
        # committed together: the copies of m-1 meet in one transaction, where the first one's id counts
        copies = [adapter.inject("hi", message_id="m-1") for _ in range(4)]
        others = [adapter.inject(f"other {i}", chat_id=f"chat-o{i}", message_id=f"o-{i}") for i in range(4)]
        results = await asyncio.gather(*copies, *others)
        assert sorted(r.value for r in results[:4]) == ["accepted", "duplicate", "duplicate", "duplicate"]
        assert all(r is Delivery.ACCEPTED for r in results[4:])
        await platform.wait_sent(5)
        await idle(host)
        status = (await host.call("communication.status")).data
        # 8 arrivals, then a claim and an outcome for each of the 5 turns
        assert status["writes_committed"] == 18 and status["write_transactions"] < 18
        rows = await log(host, direction="in")
        assert sorted(r["message_id"] for r in rows) == ["m-1", "o-0", "o-1", "o-2", "o-3"]
        assert all(r["status"] == "answered" for r in rows)
    assert sorted(platform.texts()) == ["echo: hi", "echo: other 0", "echo: other 1", "echo: other 2", "echo: other 3"]


@pytest.mark.asyncio
async def test_one_turn_at_a_time_per_chat_and_chats_concurrently(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    gate = threading.Event()
    seen: list[str] = []

    def responder(body: dict[str, Any]) -> str:
        text = last_user(body)
        seen.append(text)
        if text == "a1":
            gate.wait(30)
        return f"echo: {text}"

    model.responder = responder
    async with running(tmp_path, host_config(model, platform, loop={"dm_policy": "open"})) as host:
        adapter = await running_adapter(host)
        for text, chat in (("a1", "A"), ("a2", "A"), ("b1", "B")):
            assert await adapter.inject(text, chat_id=chat, message_id=text) is Delivery.ACCEPTED
        await until(lambda: platform.texts("B") == ["echo: b1"])  # B answered while A's first turn waits
        assert "a2" not in seen, "a chat's second message waits for its first turn"
        comm = host.instance("communication")
        await until(lambda: comm.lanes.stats()["turns_running"] == 1)  # B's turn ends once its reply is recorded
        stats = (await host.call("communication.status")).data
        assert (stats["turns_running"], stats["queued"]) == (1, 1)
        gate.set()
        await until(lambda: len(platform.texts("A")) == 2)
        assert platform.texts("A") == ["echo: a1", "echo: a2"]
    assert seen.index("a1") < seen.index("a2")


@pytest.mark.asyncio
async def test_a_queued_message_resumed_as_its_channel_starts_runs_one_turn(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    gate = threading.Event()
    model.responder = lambda body: (gate.wait(30), f"echo: {last_user(body)}")[1]
    async with running(tmp_path, host_config(model, platform, loop={"dm_policy": "open"})) as host:
        adapter = await running_adapter(host)
        assert await adapter.inject("m1", message_id="m1") is Delivery.ACCEPTED
        await until(lambda: len(model.requests) == 1)
        assert await adapter.inject("m2", message_id="m2") is Delivery.ACCEPTED  # queued behind m1's turn
        comm = host.instance("communication")
        await comm._resume_queued("loop")  # what a (re)started channel does with the rows still queued
        comm._turns.clear()  # even queued again, the row's claim lets one turn run it
        await comm._resume_queued("loop")
        gate.set()
        await until(lambda: len(platform.sent) == 2)
        await idle(host)
        assert platform.texts() == ["echo: m1", "echo: m2"] and len(model.requests) == 2
        assert [r["status"] for r in await log(host, direction="in")] == ["answered", "answered"]


@pytest.mark.asyncio
async def test_a_full_chat_queue_answers_busy_and_records_nothing(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    gate = threading.Event()
    model.responder = lambda body: (gate.wait(30), f"echo: {last_user(body)}")[1]
    config = host_config(model, platform, loop={"dm_policy": "open"}, max_queue_per_chat=2)
    async with running(tmp_path, config) as host:
        adapter = await running_adapter(host)
        assert await adapter.inject("m1", message_id="m1") is Delivery.ACCEPTED
        await until(lambda: len(model.requests) == 1)
        assert await adapter.inject("m2", message_id="m2") is Delivery.ACCEPTED
        assert await adapter.inject("m3", message_id="m3") is Delivery.ACCEPTED
        assert await adapter.inject("m4", message_id="m4") is Delivery.BUSY
        assert await adapter.inject("other chat", chat_id="chat-2", message_id="m5") is Delivery.ACCEPTED
        gate.set()
        await until(lambda: len(platform.sent) == 4)
        await idle(host)
        assert "m4" not in [r["message_id"] for r in await log(host, direction="in")]
        # not recorded, so the platform's redelivery of m4 is taken later
        assert await adapter.inject("m4", message_id="m4") is Delivery.ACCEPTED
        await until(lambda: len(platform.sent) == 5)


@pytest.mark.asyncio
async def test_a_failed_turn_sends_the_failure_reply_not_the_error(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    model.script(Reply.error(500, "internal details of the provider"), Reply.error(500), Reply.error(500))
    async with running(tmp_path, host_config(model, platform, loop={"dm_policy": "open"})) as host:
        adapter = await running_adapter(host)
        await adapter.inject("hello", message_id="m-1")
        await platform.wait_sent(1)
        await idle(host)
        assert platform.texts() == ["Sorry, I could not answer that. The problem was logged."]
        (inbound,) = await log(host, direction="in")
        assert inbound["status"] == "failed" and "500" in inbound["detail"]


# -- access control -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_pairing_an_unknown_sender_gets_a_code_and_no_turn_until_approved(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    async with running(tmp_path, host_config(model, platform)) as host:  # dm_policy: pairing (the default)
        adapter = await running_adapter(host)
        assert await adapter.inject("let me in", sender_id="eve", chat_id="dm-eve", message_id="e1") is Delivery.REFUSED
        (notice,) = await platform.wait_sent(1)
        await idle(host)
        listed = (await host.call("communication.pairing_list")).data["requests"]
        (request,) = listed
        code = request["code"]
        assert (request["sender_id"], request["chat_id"], request["status"]) == ("eve", "dm-eve", "pending")
        assert code in notice.text and notice.chat_id == "dm-eve"
        assert 3590 <= request["expires_at"] - request["created_at"] <= 3600
        assert await adapter.inject("again", sender_id="eve", chat_id="dm-eve", message_id="e2") is Delivery.REFUSED
        assert model.requests == [] and await sessions(host, "dm-eve") == []
        assert len(platform.sent) == 1, "one code, not one per message"
        refused = await log(host, direction="in", status="refused")
        assert [r["message_id"] for r in refused] == ["e2", "e1"]
        assert "pairing" in refused[1]["detail"]

        shown = f"{code[:4].lower()}-{code[4:].lower()}"
        approved = await host.call("communication.pairing_approve", code=shown)
        assert approved.success, approved.error_message
        assert approved.data["status"] == "approved"
        await platform.wait_sent(2)
        assert "approved" in platform.texts("dm-eve")[-1]
        again = await host.call("communication.pairing_approve", code=code)
        assert not again.success and "already approved" in again.error_message
        assert await adapter.inject("hello", sender_id="eve", chat_id="dm-eve", message_id="e3") is Delivery.ACCEPTED
        await platform.wait_sent(3)
        assert platform.texts("dm-eve")[-1] == "echo: hello"


@pytest.mark.asyncio
async def test_pairing_deny_expiry_and_the_pending_cap(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    config = host_config(model, platform, max_pending_pairings=2)
    async with running(tmp_path, config) as host:
        adapter = await running_adapter(host)
        for sender in ("s1", "s2", "s3"):
            await adapter.inject("hi", sender_id=sender, chat_id=f"dm-{sender}", message_id=f"{sender}-1")
        await platform.wait_sent(2)
        await idle(host)
        codes = {r["sender_id"]: r["code"] for r in (await host.call("communication.pairing_list")).data["requests"]}
        assert set(codes) == {"s1", "s2"}, "no third code while two are pending"
        (s3,) = await log(host, chat_id="dm-s3")
        assert "too many pairing requests" in s3["detail"]

        denied = await host.call("communication.pairing_deny", code=codes["s1"])
        assert denied.data["status"] == "denied"
        await adapter.inject("please", sender_id="s1", chat_id="dm-s1", message_id="s1-2")
        assert len(platform.sent) == 2, "a denied sender gets no new code"

        db = host.instance("communication").db
        await db.execute("UPDATE pairing SET expires_at = ? WHERE code = ?", (time.time() - 1, codes["s2"]))
        expired = await host.call("communication.pairing_approve", code=codes["s2"])
        assert not expired.success and "expired" in expired.error_message
        listed = (await host.call("communication.pairing_list", status="all")).data["requests"]
        assert {r["sender_id"]: r["status"] for r in listed} == {"s1": "denied", "s2": "expired"}
        bad = await host.call("communication.pairing_approve", code="0OIL-1234")
        assert not bad.success and bad.error_type.value == "invalid_payload"
        unknown = await host.call("communication.pairing_approve", code="ABCD-EFGH")
        assert not unknown.success and "no pairing request" in unknown.error_message
    assert model.requests == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("policy", "allow", "sender", "verdict"),
    [
        ("open", [], "anyone", Delivery.ACCEPTED),
        ("allowlist", ["alice"], "alice", Delivery.ACCEPTED),
        ("allowlist", ["alice"], "mallory", Delivery.REFUSED),
        ("pairing", ["alice"], "alice", Delivery.ACCEPTED),
        ("disabled", ["alice"], "alice", Delivery.REFUSED),
    ],
)
async def test_dm_policies(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform, policy: str, allow: list[str], sender: str, verdict: Any
) -> None:
    config = host_config(model, platform, loop={"dm_policy": policy, "allow_senders": allow})
    async with running(tmp_path, config) as host:
        adapter = await running_adapter(host)
        assert await adapter.inject("hi", sender_id=sender, chat_id=f"dm-{sender}", message_id="m1") is verdict
        if verdict is Delivery.ACCEPTED:
            await platform.wait_sent(1)
            assert platform.texts() == ["echo: hi"]
        else:
            (row,) = await log(host)
            assert row["status"] == "refused" and policy in row["detail"]
            assert model.requests == [] and platform.sent == []


@pytest.mark.asyncio
async def test_group_mention_rules(tmp_path: Path, model: ModelServer, platform: LoopPlatform) -> None:
    async with running(tmp_path, host_config(model, platform)) as host:  # group_policy: mention (the default)
        adapter = await running_adapter(host)
        group = {"chat_id": "group-1", "is_group": True}
        assert await adapter.inject("chatter", sender_id="bob", message_id="g1", **group) is Delivery.REFUSED
        assert await log(host) == [], "messages not addressed to the bot are not logged"
        assert await adapter.inject("@bot hi", sender_id="bob", message_id="g2", mentions_bot=True, **group) is (
            Delivery.ACCEPTED
        )
        (reply,) = await platform.wait_sent(1)
        await idle(host)
        bot_id = (await log(host, direction="out"))[0]["platform_ids"][0]
        assert await adapter.inject("and?", sender_id="carol", message_id="g3", reply_to=bot_id, **group) is (
            Delivery.ACCEPTED
        )
        await platform.wait_sent(2)
        assert await adapter.inject("re: bob", sender_id="dan", message_id="g4", reply_to="g1", **group) is (
            Delivery.REFUSED
        )
        assert [last_user(r) for r in model.requests] == ["@bot hi", "and?"]
        assert platform.texts("group-1") == ["echo: @bot hi", "echo: and?"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("loop", "chat", "mentioned", "verdict"),
    [
        ({"group_policy": "allowlist", "allow_chats": ["team"]}, "team", False, Delivery.ACCEPTED),
        ({"group_policy": "allowlist", "allow_chats": ["team"]}, "random", True, Delivery.REFUSED),
        ({"group_policy": "allowlist", "allow_senders": ["alice"]}, "random", False, Delivery.ACCEPTED),
        ({"group_policy": "open"}, "random", False, Delivery.ACCEPTED),
        ({"group_policy": "disabled"}, "team", True, Delivery.REFUSED),
        ({"group_policy": "mention", "allow_chats": ["team"]}, "random", True, Delivery.REFUSED),
        ({"group_policy": "mention", "allow_chats": ["team"]}, "team", True, Delivery.ACCEPTED),
    ],
)
async def test_group_policies(
    tmp_path: Path,
    model: ModelServer,
    platform: LoopPlatform,
    loop: dict[str, Any],
    chat: str,
    mentioned: bool,
    verdict: Any,
) -> None:
    async with running(tmp_path, host_config(model, platform, loop=loop)) as host:
        adapter = await running_adapter(host)
        delivery = await adapter.inject("hi", chat_id=chat, is_group=True, mentions_bot=mentioned, message_id="g1")
        assert delivery is verdict
        if verdict is Delivery.ACCEPTED:
            await platform.wait_sent(1)
        else:
            assert model.requests == [] and platform.sent == []


# -- outbound ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_send_that_finally_fails_is_recorded_failed_with_its_reason(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    platform.send_failures.extend(SendFailed(f"platform down ({i})") for i in range(3))
    async with running(tmp_path, host_config(model, platform, send_attempts=3)) as host:
        await running_adapter(host)
        response = await host.call("communication.send", channel="loop", chat_id="ops", text="deploy finished")
        assert not response.success
        assert "platform down (2) (after 3 attempts)" in response.error_message
        assert "recorded as failed" in response.error_message
        (row,) = await log(host)
        assert (row["status"], row["attempts"], row["platform_ids"]) == ("failed", 3, [])
        assert row["detail"] == "platform down (2) (after 3 attempts)"
        assert (await host.call("communication.messages", status="sent")).data["items"] == []
        channel = (await host.call("communication.channels")).data["channels"][0]
        assert (channel["failed"], channel["outbound"]) == (1, 0)
    assert platform.sent == [] and len(platform.attempts) == 3


@pytest.mark.asyncio
async def test_a_permanent_failure_is_not_retried_and_a_later_part_names_itself(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    async with running(tmp_path, host_config(model, platform, loop={"limit": 200})) as host:
        await running_adapter(host)
        platform.send_failures.append(SendFailed("chat not found", permanent=True))
        response = await host.call("communication.send", channel="loop", chat_id="gone", text="hi")
        assert not response.success and "chat not found" in response.error_message
        assert len(platform.attempts) == 1

        long_text = "\n\n".join(["a paragraph of some length here " * 5] * 3)
        platform.send_failures.extend([None, SendFailed("message too long", permanent=True)])
        response = await host.call("communication.send", channel="loop", chat_id="c", text=long_text)
        assert not response.success and "part 2 of 3: message too long" in response.error_message
        row = (await log(host, chat_id="c"))[0]
        assert row["status"] == "failed" and row["detail"] == "part 2 of 3: message too long"
        assert row["platform_ids"] == ["p-1"], "the part that did arrive is on record"


@pytest.mark.asyncio
async def test_retry_after_is_honoured(tmp_path: Path, model: ModelServer, platform: LoopPlatform) -> None:
    platform.send_failures.append(SendFailed("429 Too Many Requests", retry_after=0.4))
    async with running(tmp_path, host_config(model, platform, send_backoff=0.01)) as host:
        await running_adapter(host)
        response = await host.call("communication.send", channel="loop", chat_id="c", text="hello")
        assert response.success, response.error_message
        first, second = platform.attempt_times
        assert second - first >= 0.4, "the second attempt waited as long as the platform asked"
        (row,) = await log(host)
        assert (row["status"], row["attempts"]) == ("sent", 2)

        platform.send_failures.append(SendFailed("429 Too Many Requests", retry_after=3600))
        response = await host.call("communication.send", channel="loop", chat_id="c", text="later")
        assert not response.success
        assert "asked to wait 3600s, more than max_retry_after (120s)" in response.error_message
        assert len(platform.attempt_times) == 3, "a wait longer than max_retry_after is not attempted"


@pytest.mark.asyncio
async def test_refused_formatting_is_sent_again_as_plain_text(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    platform.send_failures.append(FormattingRejected("can't parse entities"))
    async with running(tmp_path, host_config(model, platform)) as host:
        await running_adapter(host)
        response = await host.call("communication.send", channel="loop", chat_id="c", text="**bold** and `code`")
        assert response.success, response.error_message
    (sent,) = platform.sent
    assert (sent.text, sent.text_format) == (markdown_to_plain("**bold** and `code`"), "plain")
    assert platform.attempts[0].text_format == "platform"


@pytest.mark.asyncio
async def test_sending_needs_a_serving_host_and_a_known_channel(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    from conftest import PLUGINS

    host = build_host(tmp_path, PLUGINS, config=host_config(model, platform), serving=False)
    await host.start()
    try:
        response = await host.call("communication.send", channel="loop", chat_id="c", text="hi")
        assert not response.success and "runs only inside `refactorbot serve`" in response.error_message
        unknown = await host.call("communication.send", channel="nope", chat_id="c", text="hi")
        assert not unknown.success and "unknown channel 'nope' (registered: loop)" in unknown.error_message
        both = await host.call("communication.send", channel="loop", chat_id="c", text="hi", template="t")
        assert not both.success and "either text or template" in both.error_message
    finally:
        await host.stop()
    assert platform.adapters == [], "a one-shot host starts no channel"


# -- channels: start failures, backoff, restarts -----------------------------------------------------


class OtherLoop(LoopChannel):
    name = "other"


@pytest.mark.asyncio
async def test_a_channel_that_cannot_start_is_reported_and_retried_with_backoff_while_others_run(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    from conftest import PLUGINS

    platform.start_failures.extend(ChannelError("loop: the platform refused the token") for _ in range(3))
    other = LoopPlatform()
    from loop_channel import PLATFORMS

    PLATFORMS["other-platform"] = other
    backoff = 0.5  # long enough to read the failed state between two attempts on a loaded machine
    config = host_config(model, platform, channel_backoff=backoff)
    config["channels"]["other"] = {"platform": "other-platform", "dm_policy": "open"}
    try:
        async with running(tmp_path, config, [*PLUGINS, plugin_of(channels=[OtherLoop], name="other")]) as host:
            other_adapter = await running_adapter(host, "other")
            communication = host.instance("communication")
            runner = communication.runners["loop"]
            await until(lambda: runner.status == "failed")
            health = await communication.health_check()
            assert health.status.value == "degraded"
            assert health.message.startswith("channel loop: loop: the platform refused the token (retry in")
            assert "\n" not in health.message
            listed = (await host.call("communication.channels")).data["channels"]
            loop_row = next(c for c in listed if c["name"] == "loop")
            assert loop_row["status"] == "failed" and loop_row["last_error"] == "loop: the platform refused the token"
            assert await other_adapter.inject("still here", message_id="o1") is Delivery.ACCEPTED
            await other.wait_sent(1)
            await running_adapter(host)  # the fourth start succeeds
            assert (await communication.health_check()).status.value == "healthy"
    finally:
        PLATFORMS.pop("other-platform", None)
    stamps = platform.start_times
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert len(gaps) == 3
    for index, gap in enumerate(gaps):
        assert gap >= backoff * 2**index * 0.9, gaps  # 0.5 s, 1 s, 2 s


@pytest.mark.asyncio
async def test_a_channel_that_dies_while_running_is_restarted(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    async with running(tmp_path, host_config(model, platform, loop={"dm_policy": "open"})) as host:
        first = await running_adapter(host)
        first.fail("connection lost")
        runner = host.instance("communication").runners["loop"]
        await until(lambda: runner.running and runner.adapter is not first)
        assert runner.error is None and runner.restarts == 1
        assert platform.starts == 2 and platform.stops == 1
        assert await runner.adapter.inject("back", message_id="m1") is Delivery.ACCEPTED
        await platform.wait_sent(1)


@pytest.mark.asyncio
async def test_an_invalid_channel_section_is_reported_and_not_run(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    config = host_config(model, platform, loop={"dm_policy": "sometimes"})
    async with running(tmp_path, config) as host:
        communication = host.instance("communication")
        runner = communication.runners["loop"]
        assert runner.status == "invalid" and "[channels.loop]: dm_policy" in runner.error
        health = await communication.health_check()
        assert health.status.value == "degraded" and "dm_policy" in health.message
    assert platform.adapters == []


@pytest.mark.asyncio
async def test_a_disabled_channel_does_not_run(tmp_path: Path, model: ModelServer, platform: LoopPlatform) -> None:
    async with running(tmp_path, host_config(model, platform, loop={"enabled": False})) as host:
        listed = (await host.call("communication.channels")).data["channels"]
        assert [(c["name"], c["enabled"], c["status"]) for c in listed] == [("loop", False, "disabled")]
        assert (await host.instance("communication").health_check()).status.value == "healthy"
    assert platform.adapters == []


# -- restarts --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_queued_messages_run_after_a_restart_and_the_running_turn_is_interrupted(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    gate = threading.Event()

    def responder(body: dict[str, Any]) -> str:
        text = last_user(body)
        if text == "first":
            gate.wait(30)
        return f"echo: {text}"

    model.responder = responder
    config = host_config(model, platform, loop={"dm_policy": "open"}, stop_grace=0.2)
    config["core"]["drain_timeout"] = 0.2
    try:
        async with running(tmp_path, config) as host:
            adapter = await running_adapter(host)
            await adapter.inject("first", message_id="m1")
            await until(lambda: len(model.requests) == 1)
            await adapter.inject("second", message_id="m2")
    finally:
        gate.set()
    assert platform.sent == []
    async with running(tmp_path, config) as host:
        await running_adapter(host)
        await platform.wait_sent(1)
        await idle(host)
        assert platform.texts() == ["echo: second"]
        rows = {r["message_id"]: r for r in await log(host, direction="in")}
        assert rows["m1"]["status"] == "interrupted" and "stopped" in rows["m1"]["detail"]
        assert rows["m2"]["status"] == "answered"


# -- templates, the log, traffic, retention ----------------------------------------------------------


@pytest.mark.asyncio
async def test_templates(tmp_path: Path, model: ModelServer, platform: LoopPlatform) -> None:
    async with running(tmp_path, host_config(model, platform)) as host:
        await running_adapter(host)
        saved = await host.call(
            "communication.template_set", name="deploy", body="Deployed **$service** to ${env}; $$5 saved."
        )
        assert saved.success and saved.data["variables"] == ["service", "env"]
        bad = await host.call("communication.template_set", name="broken", body="cost: $5")
        assert not bad.success and "invalid placeholder" in bad.error_message
        sent = await host.call(
            "communication.send",
            channel="loop",
            chat_id="ops",
            template="deploy",
            variables={"service": "api", "env": "prod"},
        )
        assert sent.success, sent.error_message
        assert platform.texts("ops") == ["Deployed **api** to prod; $5 saved."]
        missing = await host.call(
            "communication.send", channel="loop", chat_id="ops", template="deploy", variables={"service": "api"}
        )
        assert not missing.success and "needs variable(s): env" in missing.error_message
        unknown = await host.call("communication.send", channel="loop", chat_id="ops", template="nope")
        assert not unknown.success and "no template named 'nope'" in unknown.error_message
        listed = (await host.call("communication.template_list")).data["templates"]
        assert [t["name"] for t in listed] == ["deploy"]
        assert (await host.call("communication.template_delete", name="deploy")).data == {"removed": True}
        assert (await host.call("communication.template_delete", name="deploy")).data == {"removed": False}


@pytest.mark.asyncio
async def test_the_message_log_pages_by_id_and_traffic_counts_per_minute(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    async with running(tmp_path, host_config(model, platform)) as host:
        await running_adapter(host)
        for i in range(7):
            assert (await host.call("communication.send", channel="loop", chat_id=f"c{i % 2}", text=f"n{i}")).success
        first = (await host.call("communication.messages", limit=3)).data
        assert [m["text"] for m in first["items"]] == ["n6", "n5", "n4"]
        second = (await host.call("communication.messages", limit=3, before_id=first["next_before_id"])).data
        assert [m["text"] for m in second["items"]] == ["n3", "n2", "n1"]
        last = (await host.call("communication.messages", limit=3, before_id=second["next_before_id"])).data
        assert [m["text"] for m in last["items"]] == ["n0"] and last["next_before_id"] is None
        only = (await host.call("communication.messages", chat_id="c1")).data["items"]
        assert [m["text"] for m in only] == ["n5", "n3", "n1"]
        buckets = (await host.call("communication.traffic", minutes=5)).data["buckets"]
        assert sum(b["count"] for b in buckets) == 7 and {b["direction"] for b in buckets} == {"out"}
        bad = await host.call("communication.messages", direction="sideways")
        assert not bad.success and bad.error_type.value == "invalid_payload"


@pytest.mark.asyncio
async def test_retention_purges_old_log_rows_and_old_ids(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    async with running(tmp_path, host_config(model, platform, retention_days=1, dedupe_days=2)) as host:
        await running_adapter(host)
        communication = host.instance("communication")
        assert (await host.call("communication.send", channel="loop", chat_id="c", text="new")).success
        old = time.time() - 3 * 86_400
        db = communication.db
        await db.execute(
            "INSERT INTO messages (direction, kind, channel, chat_id, text, status, created_at, updated_at)"
            " VALUES ('out', 'send', 'loop', 'c', 'old', 'sent', ?, ?)",
            (old, old),
        )
        await db.execute("INSERT INTO seen (channel, message_id, received_at) VALUES ('loop', 'ancient', ?)", (old,))
        removed = await communication._purge()
        assert removed["messages"] == 1 and removed["seen"] == 1
        assert [m["text"] for m in await log(host)] == ["new"]


# -- the webhook route on the control API -------------------------------------------------------------


def test_the_webhook_route_hands_the_raw_request_to_the_running_channel(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    import json

    import httpx
    from conftest import PLUGINS
    from refactorbot_api.testing import running_server

    config = host_config(model, platform, loop={"dm_policy": "open"})
    with running_server(tmp_path, PLUGINS, config=config) as server:
        server.run(running_adapter(server.host))
        body = json.dumps({"id": "w1", "chat_id": "web", "sender_id": "alice", "text": "via webhook"}).encode()
        with httpx.Client(base_url=server.url, trust_env=False) as client:
            forged = client.post("/hooks/loop", content=body)
            assert forged.status_code == 401
            accepted = client.post("/hooks/loop", content=body, headers={"x-loop-key": "open-sesame"})
            assert accepted.status_code == 200, accepted.text
            assert accepted.json() == {"status": "accepted", "bytes": len(body)}
            server.run(platform.wait_sent(1))
            assert platform.texts("web") == ["echo: via webhook"]
            unknown = client.post("/hooks/telegram", content=body)
            assert unknown.status_code == 404 and "no running channel 'telegram'" in unknown.json()["detail"]
            bad_name = client.post("/hooks/..%2Fslices", content=body)
            assert bad_name.status_code == 404
            huge = client.post(
                "/hooks/loop", content=b"x" * (LoopChannel.max_body + 1), headers={"x-loop-key": "open-sesame"}
            )
            assert huge.status_code == 413
            token_free = client.get("/slices")
            assert token_free.status_code == 401, "only /hooks/ is open without the token"


@pytest.mark.asyncio
async def test_a_message_after_stop_began_is_unavailable(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    async with running(tmp_path, host_config(model, platform, loop={"dm_policy": "open"})) as host:
        adapter = await running_adapter(host)
    assert await adapter.inject("late", message_id="m1") is Delivery.UNAVAILABLE
    assert model.requests == []


@pytest.mark.asyncio
async def test_the_reason_a_channel_is_down_shows_in_the_slice_status(
    tmp_path: Path, model: ModelServer, platform: LoopPlatform
) -> None:
    platform.start_failures.extend(ChannelError("loop: bad token") for _ in range(100))
    config = host_config(model, platform, channel_backoff=30)
    config["core"]["health_interval"] = 0.05
    async with running(tmp_path, config) as host:

        def row() -> dict[str, Any]:
            return next(r for r in host.slice_status() if r["slice_id"] == "communication")

        await until(lambda: row()["status"] == "degraded")
        assert row()["error"].startswith("channel loop: loop: bad token (retry in")
        assert row()["health"] == "degraded"
