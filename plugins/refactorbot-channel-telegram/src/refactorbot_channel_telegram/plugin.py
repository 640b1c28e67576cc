"""Entry point of refactorbot-channel-telegram: registers the ``telegram`` channel."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_channel_telegram.channel import TelegramChannel

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_channels(register: Any) -> None:
    """Register the Telegram channel."""
    register(TelegramChannel)
