"""Fixtures of the Feishu channel's tests (defined in ``feishu_fixtures``)."""

from feishu_fixtures import feishu, webhook_channel, ws_channel

__all__ = ["feishu", "webhook_channel", "ws_channel"]
