"""Entry point of refactorbot-channel-discord: registers the ``discord`` channel."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_channel_discord.channel import DiscordChannel

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_channels(register: Any) -> None:
    """Register the Discord channel."""
    register(DiscordChannel)
