"""A chat turn the agent cannot answer: the reply says so, the server's unified log says why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import refactorbot_api.plugin
from api_sample import CONFIG
from pydantic import BaseModel
from refactorbot import AtomicSlice, RefactorbotError, hookimpl, operation
from refactorbot.testing import host_running

pytestmark = pytest.mark.asyncio

MISSING = "OPENAI_API_KEY is not set (needed for model openai/gpt-4o-mini); export it or choose another model"


class Run(BaseModel):
    message: str
    session_id: str | None = None
    user_id: str | None = None
    mode: str = "auto"
    memories: list[str] | None = None


class KeylessAgent(AtomicSlice):
    """An agent whose model cannot be reached: no key."""

    slice_id = "agent"
    uses_database = False

    @operation
    async def run(self, params: Run) -> dict[str, Any]:
        """Fail like a model call without its key."""
        raise RefactorbotError(MISSING)

    @operation(stream=True)
    async def stream_run(self, params: Run, emit: Any) -> dict[str, Any]:
        """Fail like a streamed model call without its key."""
        raise RefactorbotError(MISSING)


class Plugin:
    REFACTORBOT_API = 1

    @hookimpl
    def register_slices(self, register: Any) -> None:
        register(KeylessAgent)


async def test_failed_turns_are_logged_by_the_server(tmp_path: Path) -> None:
    async with host_running(tmp_path, [Plugin(), refactorbot_api.plugin], config=CONFIG):
        info = json.loads((tmp_path / "server.json").read_text())
        token = (tmp_path / "api-token").read_text().strip()
        async with httpx.AsyncClient(
            base_url=info["url"], headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as client:
            answered = await client.post("/chat", json={"text": "hello", "chat_id": "c1"})
            assert answered.status_code == 200
            reply = answered.json()
            assert reply["metadata"]["ok"] is False and MISSING in reply["metadata"]["error"]
            streamed = await client.post("/chat/stream", json={"text": "hello", "chat_id": "c2"})
            last = json.loads(streamed.text.splitlines()[-1])
            assert last["reply"]["metadata"]["ok"] is False
            logged = (await client.get("/logs", params={"level": "WARNING"})).json()["items"]
    lines = [row["message"] for row in logged if row["logger"] == "refactorbot.api"]
    assert any(line.startswith("POST /chat: the turn of chat 'c1' failed") and MISSING in line for line in lines)
    assert any(line.startswith("POST /chat/stream: the turn of chat 'c2' failed") for line in lines)
    assert all("\n" not in line for line in lines)
