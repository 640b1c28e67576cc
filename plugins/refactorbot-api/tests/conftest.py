from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import api_sample
import httpx
import pytest_asyncio
import refactorbot_api.plugin
from api_sample import CONFIG, Served
from refactorbot.testing import host_running


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with host_running(tmp_path, [api_sample, refactorbot_api.plugin], config=CONFIG) as host:
        info = json.loads((tmp_path / "server.json").read_text())
        token = (tmp_path / "api-token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=info["url"], headers=headers, timeout=10) as client:
            yield Served(host, tmp_path, client)
