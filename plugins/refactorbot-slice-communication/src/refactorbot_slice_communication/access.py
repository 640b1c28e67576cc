"""Access control: who may start a turn, per channel (``dm_policy``, ``group_policy``, allow-lists)."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Literal

from refactorbot import ChannelConfig, IncomingMessage

from refactorbot_slice_communication.models import CODE_ALPHABET, CODE_LENGTH

Verdict = Literal["allow", "refuse", "ignore", "pair"]


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do with an incoming message: run a turn, refuse it, ignore it, or start pairing."""

    verdict: Verdict
    reason: str = ""


def decide(message: IncomingMessage, settings: ChannelConfig, *, approved: bool, replied_to_bot: bool) -> Decision:
    """Return the decision for ``message`` under its channel's ``settings``.

    Direct chats (``dm_policy``): ``open`` lets anyone talk; ``allowlist`` only senders in
    ``allow_senders`` (or chats in ``allow_chats``) and senders approved earlier by pairing;
    ``pairing`` (default) is ``allowlist`` plus a one-time code for an unknown sender, which the
    owner approves; ``disabled`` refuses every direct message.

    Groups (``group_policy``): ``mention`` (default) answers when the bot is mentioned or a
    message of the bot is replied to; ``open`` answers every message; ``allowlist`` answers every
    message of a chat in ``allow_chats`` or a sender in ``allow_senders``; ``disabled`` none. With
    ``allow_chats`` set, ``mention`` and ``open`` also hold only in those chats.
    """
    listed_sender = message.sender_id in settings.allow_senders
    listed_chat = message.chat_id in settings.allow_chats
    if message.is_group:
        group_policy = settings.group_policy
        if group_policy == "disabled":
            return Decision("refuse", "group chats are disabled on this channel (group_policy)")
        if group_policy == "allowlist":
            if listed_chat or listed_sender:
                return Decision("allow")
            return Decision("refuse", "neither this group nor its sender is allowed (group_policy = allowlist)")
        if settings.allow_chats and not listed_chat:
            return Decision("refuse", "this group is not in allow_chats")
        if group_policy == "open" or message.mentions_bot or replied_to_bot:
            return Decision("allow")
        return Decision("ignore", "not addressed to the bot (group_policy = mention)")
    policy = settings.dm_policy
    if policy == "disabled":
        return Decision("refuse", "direct messages are disabled on this channel (dm_policy)")
    if policy == "open" or listed_sender or listed_chat or approved:
        return Decision("allow")
    if policy == "allowlist":
        return Decision("refuse", "sender not allowed (dm_policy = allowlist)")
    return Decision("pair", "sender not paired yet (dm_policy = pairing)")


def new_code() -> str:
    """Return a fresh pairing code."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def show_code(code: str) -> str:
    """Return a code as shown to people: ``ABCD-EFGH``."""
    return f"{code[:4]}-{code[4:]}"


def pairing_text(code: str, minutes: int) -> str:
    """Return the message an unknown sender gets."""
    return (
        f"Hi! This assistant only talks to people its owner has approved. Your pairing code is {show_code(code)} "
        f"(valid for {minutes} minutes). Ask the owner to run: refactorbot pairing approve {code}"
    )


APPROVED_TEXT = "You have been approved: send your message again and the assistant will answer."
