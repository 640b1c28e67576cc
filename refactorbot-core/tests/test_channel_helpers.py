"""The helpers every channel adapter builds on: webhook answers and signatures, ``Retry-After``,
the replay guard, the channel config's list fields, the plain-text fallback and message splitting
that keeps code fences whole."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from pydantic import ValidationError
from refactorbot.channels import (
    ChannelConfig,
    Delivery,
    FormattingRejected,
    ReplayCacheFull,
    ReplayGuard,
    SendFailed,
    WebhookRequest,
    WebhookResponse,
    close_fences,
    hmac_sha256_hex,
    markdown_to_plain,
    parse_retry_after,
    signatures_match,
    split_parts,
    split_text,
)


def test_send_failures_carry_retry_hints() -> None:
    failed = SendFailed("429 Too Many Requests", retry_after=3.0)
    assert (str(failed), failed.reason, failed.retry_after, failed.permanent) == (
        "429 Too Many Requests",
        "429 Too Many Requests",
        3.0,
        False,
    )
    refused = FormattingRejected("can't parse entities")
    assert refused.permanent and refused.retry_after is None and isinstance(refused, SendFailed)


def test_webhook_request_and_answers() -> None:
    request = WebhookRequest("POST", "/hooks/x", {"x-signature": "abc"}, {}, b"{}")
    assert request.header("X-Signature") == "abc" and request.header("missing") is None

    answer = WebhookResponse.json({"ok": True}, 201, {"X-Id": "1"})
    assert (answer.status, json.loads(answer.body), answer.content_type, answer.headers) == (
        201,
        {"ok": True},
        "application/json",
        {"X-Id": "1"},
    )
    challenge = WebhookResponse.text("echo-me")
    assert (challenge.status, challenge.body, challenge.content_type) == (200, b"echo-me", "text/plain; charset=utf-8")
    error = WebhookResponse.error(401, "bad signature")
    assert (error.status, json.loads(error.body)) == (401, {"detail": "bad signature"})

    taken = WebhookResponse.for_delivery(Delivery.DUPLICATE, {"ok": True})
    assert (taken.status, taken.headers) == (200, {})
    busy = WebhookResponse.for_delivery(Delivery.BUSY, {"ok": False})
    assert (busy.status, busy.headers) == (429, {"Retry-After": "5"})
    down = WebhookResponse.for_delivery(Delivery.UNAVAILABLE, {"ok": False})
    assert down.status == 503
    assert WebhookResponse.for_delivery(Delivery.BUSY, {}, not_taken=500).status == 500
    assert [d.taken for d in Delivery] == [True, True, True, False, False]


def test_signatures_are_compared_without_surprises() -> None:
    body = b'{"update_id": 1}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac_sha256_hex("s3cret", body) == expected == hmac_sha256_hex(b"s3cret", body)
    assert signatures_match(expected, expected)
    assert signatures_match(expected.encode(), expected.encode())
    assert not signatures_match(expected, expected[:-1] + "0")
    assert not signatures_match(expected, None)
    assert not signatures_match(expected, "é" * 64)  # non-ASCII never matches (nor raises)


def test_retry_after_as_seconds_or_an_http_date() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("  ") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None and parse_retry_after("inf") is None
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    date = format_datetime(datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(date, now=now.timestamp()) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 -0000", now=now.timestamp()) is None  # no zone: refused
    past = format_datetime(datetime(2024, 1, 1, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(past, now=now.timestamp()) == 0.0
    assert parse_retry_after(date) == 0.0  # a date long gone by the real clock


def test_the_replay_guard_remembers_until_expiry_and_refuses_when_full() -> None:
    now = [100.0]
    guard = ReplayGuard(max_entries=2, clock=lambda: now[0])
    assert guard.check("sig-a", 110.0) is True
    assert guard.check("sig-a", 110.0) is False  # a replay
    assert guard.check(b"\x01digest", 105.0) is True
    with pytest.raises(ReplayCacheFull, match=r"too many recent requests to remember \(2\); try again later"):
        guard.check("sig-c", 120.0)
    assert len(guard) == 2
    now[0] = 106.0  # the digest expired: room for one more
    assert len(guard) == 1
    assert guard.check("sig-c", 120.0) is True
    now[0] = 111.0
    assert guard.check("sig-a", 130.0) is True  # expired, so no longer a replay
    assert len(guard) == 2


def test_channel_config_list_fields_take_commas_json_or_numbers() -> None:
    assert ChannelConfig.model_validate({"allow_senders": " 123, 456 ,,"}).allow_senders == ["123", "456"]
    assert ChannelConfig.model_validate({"allow_chats": '["-100", "7"]'}).allow_chats == ["-100", "7"]
    assert ChannelConfig.model_validate({"allow_senders": [123, "abc"]}).allow_senders == ["123", "abc"]
    with pytest.raises(ValidationError, match="stream_interval"):
        ChannelConfig.model_validate({"stream_interval": 0.1})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ChannelConfig.model_validate({"token": "x"})


def test_markdown_to_plain_keeps_code_blocks_verbatim() -> None:
    text = (
        "# Title\n"
        "Some **bold**, *italic*, _under_ and ~~gone~~ text with `code` and a [link](https://x.test/a).\n"
        "![logo](https://x.test/l.png)\n"
        "```python\n"
        "x = **not bold** and `kept`\n"
        "```\n"
        "snake_case_name stays\n"
    )
    assert markdown_to_plain(text) == (
        "Title\n"
        "Some bold, italic, under and gone text with code and a link (https://x.test/a).\n"
        "logo (https://x.test/l.png)\n"
        "x = **not bold** and `kept`\n"
        "snake_case_name stays\n"
    )


def test_split_text_cuts_at_paragraphs_then_lines_then_words() -> None:
    assert split_text("short", 10) == ["short"]
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        split_text("x", 0)
    paragraphs = "a" * 30 + "\n\n" + "b" * 30 + "\nc" * 5
    parts = split_text(paragraphs, 40)
    assert parts[0] == "a" * 30 + "\n\n" and "".join(parts) == paragraphs
    words = "word " * 20
    parts = split_text(words, 23)
    assert all(len(p) <= 23 for p in parts) and all(p.endswith(" ") for p in parts[:-1])
    assert "".join(parts) == words
    unbroken = "x" * 25
    assert split_text(unbroken, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_a_code_fence_cut_in_two_is_closed_and_reopened() -> None:
    code = "\n".join(f"line {n:02d} = {n}" for n in range(12))
    text = "Here:\n```python\n" + code + "\n```\nDone."
    parts = split_parts(text, 80)
    assert len(parts) > 1
    assert "".join(p.body for p in parts) == text  # the bodies give back the text exactly
    for part in parts:
        assert len(part.text) <= 80
        assert part.text.count("```") % 2 == 0, part.text  # every part's fences balanced
    assert parts[1].opener == "```python\n" and parts[0].closer.endswith("```")
    # a fence whose markers would take more than half a part is not re-balanced
    tiny = split_parts("```python\n" + "y" * 30 + "\n```", 12)
    assert all(p.opener == "" and p.closer == "" for p in tiny)


def test_close_fences_closes_only_an_open_block() -> None:
    assert close_fences("") == ""
    assert close_fences("plain") == "plain"
    assert close_fences("x\n```py\nprint(1)") == "x\n```py\nprint(1)\n```"
    assert close_fences("x\n~~~~\n") == "x\n~~~~\n~~~~"
    assert close_fences("```\na\n```") == "```\na\n```"
    assert close_fences("````\na\n```\n") == "````\na\n```\n````"  # a shorter marker does not close it
