"""Entry point of refactorbot-channel-console: registers the ``console`` channel."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_channel_console.channel import ConsoleChannel

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_channels(register: Any) -> None:
    """Register the console channel."""
    register(ConsoleChannel)
