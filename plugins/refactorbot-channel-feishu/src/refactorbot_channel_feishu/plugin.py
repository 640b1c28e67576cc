"""Entry point of refactorbot-channel-feishu: registers the ``feishu`` channel."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_channel_feishu.channel import FeishuChannel

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_channels(register: Any) -> None:
    """Register the Feishu channel."""
    register(FeishuChannel)
