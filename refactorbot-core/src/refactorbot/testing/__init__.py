"""The testing kit for plugin authors: an isolated host, fixtures, a loopback model, contracts.

Installed as a pytest plugin (entry point ``pytest11``), so its fixtures are available in any
test suite once ``refactorbot-core[testing]`` is installed. Subclass the contracts::

    from refactorbot.testing import SliceContract

    class TestNotes(SliceContract):
        slice_class = NotesSlice
        plugin = "refactorbot_example_notes.plugin"

and build what a test needs beside the plugin under test with ``plugin_of(slices=..., tools=...,
gateways=..., hooks=...)``; ``LoopbackGateway`` reaches the loopback ``ModelServer`` over HTTP.
Channel adapters subclass ``ChannelContract`` and talk to a loopback platform server
(``PlatformServer`` subclasses such as ``WebhookReceiver``).

Names load on first use, so ``refactorbot.testing.model_server`` works without pytest (the
offline demo model uses it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from refactorbot.testing.builders import BuiltPlugin as BuiltPlugin
    from refactorbot.testing.builders import plugin_of as plugin_of
    from refactorbot.testing.channel_contract import ChannelContract as ChannelContract
    from refactorbot.testing.channel_contract import Inbox as Inbox
    from refactorbot.testing.channel_contract import Report as Report
    from refactorbot.testing.contracts import SliceContract as SliceContract
    from refactorbot.testing.contracts import check_import_cost as check_import_cost
    from refactorbot.testing.discord import DiscordServer as DiscordServer
    from refactorbot.testing.feishu import FeishuServer as FeishuServer
    from refactorbot.testing.gateway_contract import GatewayContract as GatewayContract
    from refactorbot.testing.host import build_host as build_host
    from refactorbot.testing.host import host_running as host_running
    from refactorbot.testing.loopback import LoopbackGateway as LoopbackGateway
    from refactorbot.testing.loopback import loopback_config as loopback_config
    from refactorbot.testing.model_server import ModelServer as ModelServer
    from refactorbot.testing.model_server import Reply as Reply
    from refactorbot.testing.platforms import PlatformRequest as PlatformRequest
    from refactorbot.testing.platforms import PlatformResponse as PlatformResponse
    from refactorbot.testing.platforms import PlatformServer as PlatformServer
    from refactorbot.testing.platforms import WebhookReceiver as WebhookReceiver
    from refactorbot.testing.platforms import sign_webhook as sign_webhook
    from refactorbot.testing.telegram import TelegramHtmlError as TelegramHtmlError
    from refactorbot.testing.telegram import TelegramServer as TelegramServer
    from refactorbot.testing.telegram import parse_telegram_html as parse_telegram_html
    from refactorbot.testing.tool_contract import ToolContract as ToolContract
    from refactorbot.testing.whatsapp import WhatsAppServer as WhatsAppServer

_LAZY = {
    "BuiltPlugin": "builders",
    "plugin_of": "builders",
    "ChannelContract": "channel_contract",
    "Inbox": "channel_contract",
    "Report": "channel_contract",
    "SliceContract": "contracts",
    "check_import_cost": "contracts",
    "DiscordServer": "discord",
    "FeishuServer": "feishu",
    "GatewayContract": "gateway_contract",
    "build_host": "host",
    "host_running": "host",
    "LoopbackGateway": "loopback",
    "loopback_config": "loopback",
    "ModelServer": "model_server",
    "Reply": "model_server",
    "PlatformRequest": "platforms",
    "PlatformResponse": "platforms",
    "PlatformServer": "platforms",
    "WebhookReceiver": "platforms",
    "sign_webhook": "platforms",
    "TelegramHtmlError": "telegram",
    "TelegramServer": "telegram",
    "parse_telegram_html": "telegram",
    "ToolContract": "tool_contract",
    "WhatsAppServer": "whatsapp",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'refactorbot.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"refactorbot.testing.{module}"), name)
    globals()[name] = value
    return value
