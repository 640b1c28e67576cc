"""``loopedit``: the loop channel with message edits, for streamed replies (its platform records every edit)."""

from __future__ import annotations

import time
from typing import Any, Literal

from loop_channel import LoopChannel
from refactorbot import hookimpl

REFACTORBOT_API = 1


class EditingLoopChannel(LoopChannel):
    """A loop channel whose platform lets the bot edit what it sent (``platform.edits``, ``platform.shown``)."""

    name = "loopedit"

    async def send(self, message: Any) -> list[str]:
        ids = await super().send(message)
        self.platform.shown[ids[-1]] = message.text
        return ids

    async def edit(
        self, chat_id: str, message_id: str, text: str, *, text_format: Literal["platform", "plain"] = "platform"
    ) -> None:
        platform = self.platform
        failure = platform.edit_failures.popleft() if platform.edit_failures else None
        platform.edit_attempts.append((message_id, text, text_format, time.monotonic()))
        if failure is not None:
            platform.changed.set()
            raise failure
        assert message_id in platform.shown, f"edit of a message never sent: {message_id}"
        assert len(text) <= self.text_limit, "the slice edited above the limit"
        platform.edits.append((message_id, text, text_format, time.monotonic()))
        platform.shown[message_id] = text
        platform.changed.set()


@hookimpl
def register_channels(register: Any) -> None:
    register(EditingLoopChannel)
