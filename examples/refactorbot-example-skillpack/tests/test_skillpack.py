from __future__ import annotations

from pathlib import Path

import pytest
from refactorbot.testing import host_running

PLUGINS = ["refactorbot_example_skillpack.plugin", "refactorbot_slice_skills.plugin"]


@pytest.mark.asyncio
async def test_the_pack_s_skills_are_offered_to_the_agent(tmp_path: Path) -> None:
    async with host_running(tmp_path, PLUGINS, config={"core": {"health_interval": 3600}}) as host:
        packs = host.plugins.registry.skills
        assert [r.plugin for r in packs.values()] == ["refactorbot_example_skillpack.plugin"]
        listed = (await host.call("skills.list")).data["skills"]
        assert [(s["name"], s["status"], s["source"]) for s in listed] == [
            ("changelog", "available", "pack refactorbot_example_skillpack.plugin")
        ]
        block = (await host.call("skills.prompt", message="$changelog")).data
        assert "<name>changelog</name>" in block["text"] and "Keep a Changelog" in block["text"]
        assert block["activated"] == ["changelog"]
