"""``ChannelContract`` run against ``memo``, the smallest complete adapter (tests/memo_channel.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from memo_channel import MemoChannel, Notebook
from refactorbot.channels import ChannelAdapter
from refactorbot.testing import ChannelContract

HERE = str(Path(__file__).parent)


class TestMemoContract(ChannelContract):
    adapter_class = MemoChannel
    plugin = "memo_channel"

    @pytest.fixture(autouse=True)
    def importable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The import-cost check imports the plugin in a fresh interpreter: it finds it on PYTHONPATH."""
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH", "")) if p))

    @pytest.fixture
    def platform(self) -> Notebook:
        return Notebook()

    def make_adapter(self, platform: Any, **overrides: Any) -> ChannelAdapter:
        return MemoChannel({**self.adapter_config(platform), **overrides}, notebook=platform)

    def delivered(self, platform: Any, adapter: ChannelAdapter) -> list[tuple[str, str]]:
        return [(chat, text) for _, chat, text in platform.pages]

    async def push_inbound(
        self, adapter: ChannelAdapter, platform: Any, *, chat_id: str, sender_id: str, text: str, message_id: str
    ) -> None:
        assert isinstance(adapter, MemoChannel)
        await adapter.receive(chat_id=chat_id, sender_id=sender_id, text=text, message_id=message_id)
