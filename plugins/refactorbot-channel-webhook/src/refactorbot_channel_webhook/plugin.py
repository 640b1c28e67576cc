"""Entry point of refactorbot-channel-webhook: registers the ``webhook`` channel."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_channel_webhook.channel import WebhookChannel

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_channels(register: Any) -> None:
    """Register the webhook channel."""
    register(WebhookChannel)
