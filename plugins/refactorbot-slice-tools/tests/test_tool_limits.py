"""tools.limits: each tool's timeout, rate limit, the calls it may start now and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from refactorbot.testing import host_running
from tools_slice_samples import SAMPLE_TOOLS

SLICE = "refactorbot_slice_tools.plugin"


@pytest.mark.asyncio
async def test_limits_show_rate_limits_availability_and_refusals(tmp_path: Path) -> None:
    settings = {
        "core": {"health_interval": 3600},
        "slices": {"tools": {"rate_limits": {"echo": 2}, "timeouts": {"nap": 1.5}, "timeout": 9, "disabled": ["boom"]}},
    }
    async with host_running(tmp_path, [SLICE, SAMPLE_TOOLS], config=settings) as host:
        before = {t["tool"]: t for t in (await host.call("tools.limits")).data["tools"]}
        assert list(before) == ["boom", "echo", "nap", "picky"]
        assert before["echo"] == {
            "tool": "echo",
            "enabled": True,
            "timeout_s": 9.0,
            "per_minute": 2.0,
            "available": 2.0,
            "refused": 0,
        }
        assert before["nap"] == {
            "tool": "nap",
            "enabled": True,
            "timeout_s": 1.5,
            "per_minute": None,
            "available": None,
            "refused": 0,
        }
        assert before["boom"]["enabled"] is False

        for _ in range(3):
            await host.call("tools.execute", tool="echo", arguments={"text": "x"})
        after = {t["tool"]: t for t in (await host.call("tools.limits")).data["tools"]}
        assert after["echo"]["refused"] == 1
        assert 0 <= after["echo"]["available"] < 1  # refills at 2 a minute: not one whole call yet
        assert after["nap"]["refused"] == 0
