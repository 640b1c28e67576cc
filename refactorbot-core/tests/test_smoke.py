import pytest
import sample_plugins as sp
from refactorbot.testing import host_running


@pytest.mark.asyncio
async def test_echo_roundtrip(tmp_path):
    async with host_running(tmp_path, [sp.echo_plugin]) as host:
        r = await host.call("echo.echo", text="ab", times=2)
        assert r.success and r.data == {"text": "abab"}, r
