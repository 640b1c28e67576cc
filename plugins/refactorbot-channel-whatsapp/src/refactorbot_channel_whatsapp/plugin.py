"""Entry point of refactorbot-channel-whatsapp: registers the ``whatsapp`` channel."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_channel_whatsapp.channel import WhatsAppChannel

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_channels(register: Any) -> None:
    """Register the WhatsApp channel."""
    register(WhatsAppChannel)
