"""``memo``: the smallest complete channel adapter, whose platform is a notebook in memory.

Replies are written into the notebook under their chat with an id the notebook gives; incoming
messages are handed to the host by ``receive``. It shows what an adapter needs and lets the core
run ``ChannelContract`` and the adapter base class's behaviour against it.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from pydantic import Field
from refactorbot import hookimpl
from refactorbot.channels import ChannelAdapter, ChannelConfig, Delivery
from refactorbot.models import IncomingMessage, OutgoingMessage

REFACTORBOT_API = 1


class Notebook:
    """The memo platform: the pages written per chat, in order, each with its id."""

    def __init__(self) -> None:
        self.pages: list[tuple[str, str, str]] = []  # (page id, chat id, text)
        self.written = asyncio.Event()
        self._ids = itertools.count(1)

    def write(self, chat_id: str, text: str) -> str:
        page = f"page-{next(self._ids)}"
        self.pages.append((page, chat_id, text))
        self.written.set()
        return page


class MemoConfig(ChannelConfig):
    page_size: int = Field(200, ge=20, le=100_000, description="characters a page holds")


class MemoChannel(ChannelAdapter):
    """Writes replies into a notebook in memory."""

    name = "memo"
    Config = MemoConfig

    def __init__(self, config: Any = None, *, env: Any = None, notebook: Notebook | None = None) -> None:
        super().__init__(config, env=env)
        self.text_limit = self.settings.page_size
        self.notebook = notebook or Notebook()
        self.running = False

    async def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    async def send(self, message: OutgoingMessage) -> list[str]:
        return [self.notebook.write(message.chat_id, part) for part in self.split(message.text)]

    async def receive(self, *, chat_id: str, sender_id: str, text: str, message_id: str) -> Delivery:
        return await self.deliver(
            IncomingMessage(
                channel=self.name,
                chat_id=chat_id,
                sender_id=sender_id,
                text=text,
                message_id=message_id,
                raw={"note": "RAW-MEMO"},
            )
        )


@hookimpl
def register_channels(register: Any) -> None:
    register(MemoChannel)
