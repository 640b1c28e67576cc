"""The channel contract: adapters that carry messages between a platform and the host."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from refactorbot.models import IncomingMessage, OutgoingMessage

MessageHandler = Callable[[IncomingMessage], Awaitable[OutgoingMessage | None]]


class ChannelAdapter(abc.ABC):
    """A chat platform. Register subclasses with ``register_channels``."""

    name: ClassVar[str]

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self.on_message: MessageHandler | None = None

    @abc.abstractmethod
    async def connect(self) -> None:
        """Start receiving messages (polling, websocket, or wait for webhooks)."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Stop receiving and release connections."""

    @abc.abstractmethod
    async def send(self, message: OutgoingMessage) -> None:
        """Deliver ``message`` to the platform."""
