"""The WhatsApp channel against a loopback Cloud API: the channel contract, the subscription check, the forgery
corpus, normalization of the documented payloads, Graph errors, the 24-hour window and delivery statuses."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from refactorbot.channels import ChannelError, Delivery, DeliveryStatus, SendFailed, WebhookRequest
from refactorbot.models import OutgoingMessage
from refactorbot.testing import ChannelContract, Inbox
from refactorbot.testing.whatsapp import WhatsAppServer, graph_error, message_update
from refactorbot_channel_whatsapp.channel import WhatsAppChannel

TOKEN = "loopback-access-token-EAAG0123456789"
APP_SECRET = "loopback-app-secret-0123456789abcdef"
VERIFY = "verify-token-4f9c2a"
ENV = {"WHATSAPP_ACCESS_TOKEN": TOKEN, "WHATSAPP_APP_SECRET": APP_SECRET, "WHATSAPP_VERIFY_TOKEN": VERIFY}
USER = "16505551234"


def hook(body: bytes, headers: dict[str, str], method: str = "POST", query: dict[str, str] | None = None) -> Any:
    return WebhookRequest(method, "/hooks/whatsapp", {k.lower(): v for k, v in headers.items()}, query or {}, body)


def config(server: WhatsAppServer, **extra: Any) -> dict[str, Any]:
    return {"api_base": server.api_base, "phone_number_id": server.phone_number_id, **extra}


class TestWhatsAppContract(ChannelContract):
    adapter_class = WhatsAppChannel
    plugin = "refactorbot_channel_whatsapp.plugin"
    chat_id = USER
    sender_id = USER

    @pytest.fixture
    def platform(self) -> Iterator[WhatsAppServer]:
        with WhatsAppServer(access_token=TOKEN, app_secret=APP_SECRET) as server:
            server.open_window(USER)
            server.open_window(f"{USER}-2")
            yield server

    def adapter_config(self, platform: Any) -> dict[str, Any]:
        return config(platform)

    def adapter_env(self, platform: Any) -> dict[str, str]:
        return dict(ENV)

    def delivered(self, platform: Any, adapter: Any) -> list[tuple[str, str]]:
        return [(m["to"], m["text"]) for m in platform.messages if m["type"] == "text"]

    async def push_inbound(
        self, adapter: Any, platform: Any, *, chat_id: str, sender_id: str, text: str, message_id: str
    ) -> None:
        body, headers = platform.inbound(sender_id, text, message_id=message_id)
        answer = await adapter.handle_webhook(hook(body, headers))
        assert answer.status == 200, answer.body


@pytest.fixture
def server() -> Iterator[WhatsAppServer]:
    with WhatsAppServer(
        access_token=TOKEN, app_secret=APP_SECRET, templates={"reply_waiting": 1, "write_back": 0}
    ) as s:
        yield s


@pytest_asyncio.fixture
async def channel(server: WhatsAppServer) -> AsyncIterator[tuple[WhatsAppChannel, Inbox, WhatsAppServer]]:
    adapter = WhatsAppChannel(config(server, mention_names=["@assistant"]), env=ENV)
    inbox = Inbox()
    adapter.bind(inbox)
    await adapter.start()
    try:
        yield adapter, inbox, server
    finally:
        await adapter.stop()


async def make(server: WhatsAppServer, **extra: Any) -> tuple[WhatsAppChannel, Inbox]:
    adapter = WhatsAppChannel(config(server, **extra), env=ENV)
    inbox = Inbox()
    adapter.bind(inbox)
    await adapter.start()
    return adapter, inbox


def text_out(text: str, chat: str = USER, reply_to: str | None = None) -> OutgoingMessage:
    return OutgoingMessage(channel="whatsapp", chat_id=chat, text=text, reply_to=reply_to, text_format="platform")


# -- the subscription check ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_subscription_check_echoes_the_challenge_only_for_the_verify_token(channel: Any) -> None:
    adapter, inbox, _ = channel
    good = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    answer = await adapter.handle_webhook(hook(b"", {}, "GET", good))
    assert (answer.status, answer.body, answer.content_type) == (200, b"1158201444", "text/plain; charset=utf-8")
    for query in (
        {**good, "hub.verify_token": "wrong"},
        {**good, "hub.verify_token": VERIFY.upper()},
        {**good, "hub.verify_token": VERIFY[:-1]},
        {**good, "hub.verify_token": ""},
        {k: v for k, v in good.items() if k != "hub.verify_token"},
        {**good, "hub.mode": "unsubscribe"},
        {k: v for k, v in good.items() if k != "hub.mode"},
        {**good, "hub.verify_token": "é" * 8},
        {},
    ):
        refused = await adapter.handle_webhook(hook(b"", {}, "GET", query))
        assert refused.status == 403, query
        assert VERIFY.encode() not in refused.body
    for challenge in ("", "x" * 257, "line\nbreak"):
        bad = await adapter.handle_webhook(hook(b"", {}, "GET", {**good, "hub.challenge": challenge}))
        assert bad.status == 400
    assert inbox.messages == []


# -- the forgery corpus ----------------------------------------------------------------------------------------


def _forgeries(server: WhatsAppServer) -> list[tuple[str, bytes, dict[str, str], str]]:
    body, good = server.inbound(USER, "transfer everything", message_id="wamid.forged")
    sig = good["X-Hub-Signature-256"]
    digest = sig.removeprefix("sha256=")

    def with_sig(value: str | None, name: str = "X-Hub-Signature-256") -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if value is not None:
            headers[name] = value
        return headers

    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0x01
    reserialized = json.dumps(json.loads(body), separators=(",", ":")).encode()
    indented = json.dumps(json.loads(body), indent=2).encode()
    other = "sha256=" + hmac.new(b"another-app-secret", body, hashlib.sha256).hexdigest()
    empty_key = "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest()
    sha1 = "sha1=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha1).hexdigest()
    plain_hash = "sha256=" + hashlib.sha256(body).hexdigest()
    token_key = "sha256=" + hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
    verify_key = "sha256=" + hmac.new(VERIFY.encode(), body, hashlib.sha256).hexdigest()
    other_body, other_headers = server.inbound(USER, "something else", message_id="wamid.other")
    return [
        ("no signature header", body, with_sig(None), "POST"),
        ("empty signature", body, with_sig(""), "POST"),
        ("prefix only", body, with_sig("sha256="), "POST"),
        ("hex without prefix", body, with_sig(digest), "POST"),
        ("wrong prefix case", body, with_sig("SHA256=" + digest), "POST"),
        ("sha1 signature (X-Hub-Signature style)", body, with_sig(sha1), "POST"),
        ("sha1 header name", body, with_sig(sha1, "X-Hub-Signature"), "POST"),
        ("truncated by one digit", body, with_sig(sig[:-1]), "POST"),
        ("truncated by half", body, with_sig(sig[:39]), "POST"),
        ("one digit longer", body, with_sig(sig + "0"), "POST"),
        ("not hex", body, with_sig("sha256=" + "g" * 64), "POST"),
        ("non-ASCII", body, with_sig("sha256=" + "é" * 64), "POST"),
        ("signed with another app secret", body, with_sig(other), "POST"),
        ("signed with an empty key", body, with_sig(empty_key), "POST"),
        ("signed with the access token", body, with_sig(token_key), "POST"),
        ("signed with the verify token", body, with_sig(verify_key), "POST"),
        ("plain SHA-256 of the body", body, with_sig(plain_hash), "POST"),
        ("body changed by one bit", bytes(flipped), good, "POST"),
        ("byte appended", body + b" ", good, "POST"),
        ("byte removed", body[:-1], good, "POST"),
        ("JSON re-serialized compactly", reserialized, good, "POST"),
        ("JSON re-serialized indented", indented, good, "POST"),
        ("signature of another delivery", body, with_sig(other_headers["X-Hub-Signature-256"]), "POST"),
        ("other body with this signature", other_body, good, "POST"),
        ("signature with a space", body, with_sig("sha256= " + digest[:-1]), "POST"),
        ("PUT", body, good, "PUT"),
        ("DELETE", body, good, "DELETE"),
    ]


@pytest.mark.asyncio
async def test_every_forged_delivery_is_refused_and_nothing_is_delivered_or_reported(channel: Any) -> None:
    adapter, inbox, server = channel
    corpus = _forgeries(server)
    assert len(corpus) >= 20 and len({case for case, *_ in corpus}) == len(corpus)
    statuses: dict[str, int] = {}
    for case, body, headers, method in corpus:
        answer = await adapter.handle_webhook(hook(body, headers, method))
        statuses[case] = answer.status
        detail = json.loads(answer.body)["detail"]
        assert APP_SECRET not in detail and "\n" not in detail
    assert all(s in (401, 403, 405) for s in statuses.values()), statuses
    assert statuses["no signature header"] == 401 and statuses["signed with another app secret"] == 403
    assert inbox.messages == [] and inbox.reports == []
    body, headers = server.inbound(USER, "the real one", message_id="wamid.real")
    assert (await adapter.handle_webhook(hook(body, headers))).status == 200
    assert [m.text for m in inbox.messages] == ["the real one"]


@pytest.mark.asyncio
async def test_uppercase_hex_is_the_same_signature(channel: Any) -> None:
    adapter, inbox, server = channel
    body, headers = server.inbound(USER, "hello")
    headers["X-Hub-Signature-256"] = "sha256=" + headers["X-Hub-Signature-256"][7:].upper()
    assert (await adapter.handle_webhook(hook(body, headers))).status == 200
    assert len(inbox.messages) == 1


@pytest.mark.asyncio
async def test_a_stopped_channel_refuses_deliveries(server: WhatsAppServer) -> None:
    adapter, inbox = await make(server)
    await adapter.stop()
    body, headers = server.inbound(USER, "late")
    assert (await adapter.handle_webhook(hook(body, headers))).status == 503
    assert inbox.messages == []


# -- what comes in ------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_text_message_is_normalized_with_the_senders_name_and_reply_reference(channel: Any) -> None:
    adapter, inbox, server = channel
    body, headers = server.inbound(USER, "Does it come in blue?", message_id="wamid.in-1", reply_to="wamid.out-9")
    answer = await adapter.handle_webhook(hook(body, headers))
    assert json.loads(answer.body) == {"status": "ok", "messages": ["accepted"], "statuses": 0}
    (message,) = inbox.messages
    assert (message.channel, message.chat_id, message.sender_id, message.sender_name) == (
        "whatsapp",
        USER,
        USER,
        "Sheena Nelson",
    )
    assert (message.message_id, message.reply_to, message.is_group) == ("wamid.in-1", "wamid.out-9", False)
    assert "raw" not in message.model_dump() and message.raw["id"] == "wamid.in-1"


@pytest.mark.asyncio
async def test_redelivery_reaches_the_host_which_drops_it_by_message_id(channel: Any) -> None:
    adapter, inbox, server = channel
    body, headers = server.inbound(USER, "only once", message_id="wamid.dup")
    assert json.loads((await adapter.handle_webhook(hook(body, headers))).body)["messages"] == ["accepted"]
    inbox.answer = Delivery.DUPLICATE  # what the communication slice answers the second time
    again = await adapter.handle_webhook(hook(body, headers))
    assert (again.status, json.loads(again.body)["messages"]) == (200, ["duplicate"])
    assert {m.message_id for m in inbox.messages} == {"wamid.dup"}


@pytest.mark.asyncio
@pytest.mark.parametrize("answer", [Delivery.BUSY, Delivery.UNAVAILABLE])
async def test_a_host_that_cannot_take_the_message_gets_it_redelivered(channel: Any, answer: Delivery) -> None:
    adapter, inbox, server = channel
    inbox.answer = answer
    body, headers = server.inbound(USER, "later please")
    refused = await adapter.handle_webhook(hook(body, headers))
    assert refused.status == 503 and refused.headers["Retry-After"] == "5"  # Meta retries any non-200


@pytest.mark.asyncio
async def test_group_messages_carry_the_group_and_mentions_of_the_bots_number_or_name(channel: Any) -> None:
    adapter, inbox, server = channel
    group = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
    cases = [
        ("lunch anyone?", False),
        (f"@{server.display_phone_number} what is the status?", True),
        ("@assistant summarize please", True),
        (f"call @{server.display_phone_number}9 maybe", False),
        ("my@assistant.example address", False),
    ]
    for index, (text, _) in enumerate(cases):
        body, headers = server.inbound(USER, text, group_id=group, message_id=f"wamid.g{index}")
        assert (await adapter.handle_webhook(hook(body, headers))).status == 200
    assert [(m.text, m.mentions_bot) for m in inbox.messages] == cases
    assert all(m.is_group and m.chat_id == f"group:{group}" and m.sender_id == USER for m in inbox.messages)
    ids = await adapter.send(text_out("Status: green", chat=f"group:{group}"))
    (sent,) = server.wait_for_messages(1)
    assert (sent["recipient_type"], sent["to"], sent["id"]) == ("group", group, ids[0])


@pytest.mark.asyncio
async def test_media_interactive_and_other_types_are_normalized_and_reactions_skipped(channel: Any) -> None:
    adapter, inbox, server = channel
    contents: list[dict[str, Any]] = [
        {"type": "image", "image": {"id": "1479537139650973", "mime_type": "image/jpeg", "caption": "this one"}},
        {"type": "audio", "audio": {"id": "1003383421387256", "mime_type": "audio/ogg; codecs=opus", "voice": True}},
        {"type": "document", "document": {"id": "998", "mime_type": "application/pdf", "filename": "q3.pdf"}},
        {"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}},
        {"type": "button", "button": {"payload": "stop", "text": "Stop promotions"}},
        {"type": "location", "location": {"latitude": 37.48, "longitude": -122.14, "name": "Main St"}},
        {"type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": "👍"}},
        {"type": "unsupported", "errors": [{"code": 131051, "title": "Message type unknown"}]},
    ]
    for index, content in enumerate(contents):
        payload = message_update(
            phone_number_id=server.phone_number_id,
            display_phone_number=server.display_phone_number,
            sender=USER,
            message_id=f"wamid.m{index}",
            content=content,
        )
        body, headers = server.signed(payload)
        assert (await adapter.handle_webhook(hook(body, headers))).status == 200
    got = [(m.text, [(r.kind, r.ref) for r in m.media], m.metadata) for m in inbox.messages]
    assert got == [
        ("this one", [("image", "1479537139650973")], {}),
        ("[voice message]", [("voice", "1003383421387256")], {}),
        ("[document: q3.pdf]", [("file", "998")], {}),
        ("Yes", [], {"reply_id": "yes"}),
        ("Stop promotions", [], {"reply_id": "stop"}),
        ("[location: Main St 37.48, -122.14]", [("location", "geo:37.48,-122.14")], {}),
    ]
    assert inbox.messages[0].media[0].mime_type == "image/jpeg" and inbox.messages[2].media[0].name == "q3.pdf"


@pytest.mark.asyncio
async def test_updates_for_another_number_or_product_are_ignored(channel: Any) -> None:
    adapter, inbox, server = channel
    payload = message_update(phone_number_id="999999", display_phone_number="1555", sender=USER, text="not yours")
    body, headers = server.signed(payload)
    assert (await adapter.handle_webhook(hook(body, headers))).status == 200
    body, headers = server.signed({"object": "page", "entry": []})
    assert json.loads((await adapter.handle_webhook(hook(body, headers))).body)["status"] == "ignored"
    body = b"not json"
    assert (await adapter.handle_webhook(hook(body, server.signed({})[1] | _sig(body)))).status == 400
    assert inbox.messages == []


def _sig(body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()}


# -- what goes out -----------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_reply_refers_to_the_message_and_typing_marks_it_read(channel: Any) -> None:
    adapter, _, server = channel
    body, headers = server.inbound(USER, "hi", message_id="wamid.hi")
    await adapter.handle_webhook(hook(body, headers))
    await adapter.typing(USER)
    assert server.read_marks == [{"message_id": "wamid.hi", "typing": True}]
    ids = await adapter.send(text_out("*Hello* Sheena", reply_to="wamid.hi"))
    (sent,) = server.wait_for_messages(1)
    assert (sent["id"], sent["to"], sent["text"], sent["context"]) == (ids[0], USER, "*Hello* Sheena", "wamid.hi")
    assert ids[0].startswith("wamid.")
    auth = server.requests[-1].headers["authorization"]
    assert auth == f"Bearer {TOKEN}"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("scripted", "retry_after", "permanent", "fragment"),
    [
        (graph_error(130429, "(#130429) Rate limit hit"), None, False, "rate limit"),
        (graph_error(131056, "(#131056) Pair rate limit hit"), None, False, "rate limit"),
        (graph_error(80007, "(#80007) Rate limit issues", status=429, headers={"Retry-After": "7"}), 7.0, False, ""),
        (graph_error(4, "(#4) Application request limit reached", status=400), None, False, "code 4"),
        (graph_error(131000, "Something went wrong", status=500), None, False, "trouble"),
        (graph_error(2, "Service temporarily unavailable", status=503), None, False, "trouble"),
        (graph_error(100, "(#100) Invalid parameter"), None, True, "refused the message"),
        (graph_error(131026, "Message undeliverable"), None, True, "code 131026"),
        (graph_error(10, "(#10) Permission denied", status=403), None, True, "whatsapp_business_messaging"),
    ],
)
async def test_graph_errors_become_typed_send_failures(
    channel: Any, scripted: Any, retry_after: float | None, permanent: bool, fragment: str
) -> None:
    adapter, _, server = channel
    server.open_window(USER)
    server.script(scripted)
    with pytest.raises(SendFailed) as failed:
        await adapter.send(text_out("hello"))
    assert (failed.value.retry_after, failed.value.permanent) == (retry_after, permanent)
    assert fragment in failed.value.reason and "fbtrace_id" in failed.value.reason
    assert TOKEN not in failed.value.reason and "\n" not in failed.value.reason
    assert server.messages == []
    assert await adapter.send(text_out("hello again")), "the next send goes through"


@pytest.mark.asyncio
async def test_an_expired_token_is_a_permanent_failure_naming_the_variable(channel: Any) -> None:
    adapter, _, server = channel
    server.open_window(USER)
    server.script(graph_error(190, "Error validating access token: Session has expired", status=401, subcode=463))
    with pytest.raises(SendFailed) as failed:
        await adapter.send(text_out("hello"))
    assert failed.value.permanent
    assert "WHATSAPP_ACCESS_TOKEN" in failed.value.reason and "subcode 463" in failed.value.reason
    assert TOKEN not in failed.value.reason


@pytest.mark.asyncio
async def test_outside_the_window_without_a_template_the_failure_says_what_to_do(channel: Any) -> None:
    adapter, _, server = channel
    with pytest.raises(SendFailed) as failed:
        await adapter.send(text_out("are you there?"))
    assert failed.value.permanent and "24-hour window" in failed.value.reason
    assert "template_name" in failed.value.reason and "131047" in failed.value.reason
    assert server.messages == []


@pytest.mark.asyncio
async def test_outside_the_window_the_template_carries_the_text(server: WhatsAppServer) -> None:
    adapter, _ = await make(server, template_name="reply_waiting", template_language="en")
    try:
        ids = await adapter.send(text_out("Your build *finished*.\n\nAll   tests passed."))
    finally:
        await adapter.stop()
    (sent,) = server.wait_for_messages(1)
    assert sent["type"] == "template" and sent["id"] == ids[0]
    assert sent["template"] == {
        "name": "reply_waiting",
        "language": {"code": "en"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Your build finished. All tests passed."}]}
        ],
    }


@pytest.mark.asyncio
async def test_a_notice_template_is_sent_but_the_text_is_recorded_undelivered(server: WhatsAppServer) -> None:
    adapter, _ = await make(server, template_name="write_back", template_text="none")
    try:
        with pytest.raises(SendFailed) as failed:
            await adapter.send(text_out("the report is ready"))
    finally:
        await adapter.stop()
    (sent,) = server.wait_for_messages(1)
    assert sent["template"] == {"name": "write_back", "language": {"code": "en_US"}}
    assert failed.value.permanent and "not delivered" in failed.value.reason and sent["id"] in failed.value.reason


@pytest.mark.asyncio
async def test_a_text_longer_than_the_template_variable_fails_clearly(server: WhatsAppServer) -> None:
    adapter, _ = await make(server, template_name="reply_waiting", template_max_chars=20)
    try:
        with pytest.raises(SendFailed, match="longer than template reply_waiting's variable"):
            await adapter.send(text_out("x" * 21))
    finally:
        await adapter.stop()
    assert server.messages == []


# -- delivery statuses ------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_status_callbacks_are_reported_with_the_reason_of_a_failure(channel: Any) -> None:
    adapter, inbox, server = channel
    server.open_window(USER)
    first = (await adapter.send(text_out("one")))[0]
    server.fail_next_delivery(131026, "Message undeliverable", "The recipient is not on WhatsApp")
    second = (await adapter.send(text_out("two")))[0]
    assert len(server.deliveries) == 3
    for body, headers in server.deliveries:
        answer = await adapter.handle_webhook(hook(body, headers))
        assert json.loads(answer.body)["statuses"] == 1
    reports = [(r.message_id, r.status, r.reason) for r in inbox.reports]
    assert reports == [
        (first, DeliveryStatus.SENT, None),
        (first, DeliveryStatus.DELIVERED, None),
        (
            second,
            DeliveryStatus.FAILED,
            "WhatsApp could not deliver it: Message undeliverable: The recipient is not on WhatsApp (code 131026)",
        ),
    ]
    assert inbox.messages == []


@pytest.mark.asyncio
async def test_a_window_failure_reported_later_is_recorded_with_what_to_do(server: WhatsAppServer) -> None:
    server.window_errors = "status"  # the Cloud API takes the message, then reports it failed
    adapter, inbox = await make(server)
    try:
        (wamid,) = await adapter.send(text_out("hello after a week"))
        (body, headers) = server.deliveries[0]
        await adapter.handle_webhook(hook(body, headers))
    finally:
        await adapter.stop()
    (report,) = inbox.reports
    assert (report.message_id, report.status) == (wamid, DeliveryStatus.FAILED)
    assert report.reason is not None and "24-hour window" in report.reason and "template_name" in report.reason


@pytest.mark.asyncio
async def test_a_window_failure_reported_later_is_sent_again_as_the_template(server: WhatsAppServer) -> None:
    server.window_errors = "status"
    adapter, inbox = await make(server, template_name="reply_waiting")
    try:
        (wamid,) = await adapter.send(text_out("hello after a week"))
        (body, headers) = server.deliveries[0]
        await adapter.handle_webhook(hook(body, headers))
        (report,) = await inbox.wait_reports(1)
    finally:
        await adapter.stop()
    free, template = server.wait_for_messages(2)
    assert (free["id"], template["type"]) == (wamid, "template")
    assert report.status is DeliveryStatus.FAILED and report.message_id == wamid
    assert (
        report.reason is not None
        and f"sent again as template reply_waiting (message {template['id']})" in report.reason
    )


@pytest.mark.asyncio
async def test_statuses_that_are_no_delivery_state_are_acknowledged_and_skipped(channel: Any) -> None:
    adapter, inbox, server = channel
    for message_id, status in (("wamid.voice", "played"), ("wamid.x", "deleted"), ("w" * 600, "read"), ("", "sent")):
        body, headers = server.status(message_id, status, USER)
        answer = await adapter.handle_webhook(hook(body, headers))
        assert answer.status == 200, answer.body
    assert inbox.reports == [] and inbox.messages == []


# -- starting ----------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_start_fails_with_one_line_naming_what_is_missing_or_refused(server: WhatsAppServer) -> None:
    cases: list[tuple[dict[str, Any], dict[str, str], str]] = [
        ({"api_base": server.api_base}, ENV, "set phone_number_id"),
        (config(server), {}, "WHATSAPP_ACCESS_TOKEN is not set"),
        (config(server), {**ENV, "WHATSAPP_APP_SECRET": ""}, "WHATSAPP_APP_SECRET is not set"),
        (config(server), {k: v for k, v in ENV.items() if k != "WHATSAPP_VERIFY_TOKEN"}, "WHATSAPP_VERIFY_TOKEN"),
        (config(server), {**ENV, "WHATSAPP_ACCESS_TOKEN": "revoked-token-value"}, "refused the access token"),
        ({**config(server), "phone_number_id": "12345"}, ENV, "WhatsApp refused"),
        ({**config(server), "api_base": "http://127.0.0.1:9/v24.0"}, ENV, "cannot reach"),
    ]
    for settings, env, reason in cases:
        adapter = WhatsAppChannel(settings, env=env)
        with pytest.raises(ChannelError, match=reason) as failed:
            await adapter.start()
        message = str(failed.value)
        assert "\n" not in message and "revoked-token-value" not in message and TOKEN not in message
        await adapter.stop()


def test_enabled_by_default_once_the_token_and_app_secret_are_set() -> None:
    settings = WhatsAppChannel.Config()
    assert WhatsAppChannel.enabled_by_default(settings, ENV)
    assert not WhatsAppChannel.enabled_by_default(settings, {"WHATSAPP_ACCESS_TOKEN": TOKEN})
    assert not WhatsAppChannel.enabled_by_default(settings, {})


def test_settings_are_validated_with_clear_errors() -> None:
    from refactorbot.errors import ConfigError

    for bad in (
        {"phone_number_id": "+1 555"},
        {"template_name": "Has Spaces"},
        {"template_text": "sometimes"},
        {"access_token_env": "EAAGsecretvalue-with-dashes!"},
    ):
        with pytest.raises(ConfigError) as failed:
            WhatsAppChannel(bad)
        assert "secretvalue" not in str(failed.value)
    assert WhatsAppChannel({"mention_names": "@bot, assistant"}).settings.mention_names == ["@bot", "assistant"]


def test_markdown_is_rendered_to_whatsapp_markers_and_back_to_plain() -> None:
    adapter = WhatsAppChannel(env={})
    rendered = adapter.render(
        "# Title\n\n**bold** and _it_ and *it too* and ~~old~~, `x_y`, [docs](https://e.x/d)\n\n"
        "```python\nprint('**kept**')\n```\n"
    )
    assert rendered == (
        "*Title*\n\n*bold* and _it_ and _it too_ and ~old~, `x_y`, docs (https://e.x/d)\n\n```\nprint('**kept**')\n```\n"
    )
    assert adapter.plain(rendered) == (
        "Title\n\nbold and it and it too and old, x_y, docs (https://e.x/d)\n\nprint('**kept**')\n"
    )
    assert adapter.render("snake_case_name stays, 2*3*4 too") == "snake_case_name stays, 2*3*4 too"
