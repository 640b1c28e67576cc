"""What a slice sees of the host through ``ctx.host`` (the ``Host`` protocol) and ``ctx.env``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from refactorbot import AtomicSlice, Host, LLMCall, SliceContext, operation
from refactorbot.testing import host_running, plugin_of

QUIET = {"core": {"health_interval": 3600}}


class ProbeSlice(AtomicSlice):
    """Record what the host says, at start, in an operation and at stop."""

    slice_id = "probe"
    uses_database = False
    seen: dict[str, Any] = {}

    def _host(self) -> Host:
        assert self.ctx.host is not None
        return self.ctx.host

    async def start(self) -> None:
        host = self._host()
        ProbeSlice.seen["start"] = {
            "serving": host.serving,
            "stopping": host.stopping,
            "env": dict(self.ctx.env),
            "slices": sorted(host.plugins.registry.slices),
            "plugin": host.plugins.records[host.plugins.registry.slices["probe"].plugin].status,
            "instance": host.instance("probe") is self,
            "gateway": host.gateway_for(LLMCall(model="loopback/x", messages=[])).name,
        }

    @operation
    async def ping(self) -> str:
        """Answer, and record the host's metrics of this slice so far."""
        ProbeSlice.seen["metrics"] = sorted(self._host().metrics.snapshot("probe"))
        return "pong"

    async def stop(self) -> None:
        ProbeSlice.seen["stop"] = {"stopping": self._host().stopping, "instance": self._host().instance("probe")}


@pytest.mark.asyncio
@pytest.mark.parametrize("serving", [True, False])
async def test_a_slice_reads_the_host_through_its_typed_accessors(tmp_path: Path, serving: bool) -> None:
    from refactorbot.testing import LoopbackGateway

    ProbeSlice.seen = {}
    plugins = [plugin_of(slices=[ProbeSlice], name="probe-plugin"), plugin_of(gateways=[LoopbackGateway])]
    env = {"RB_PROBE_MARK": "from the host"}
    async with host_running(tmp_path, plugins, config=QUIET, env=env, serving=serving) as host:
        assert (await host.call("probe.ping")).data == "pong"
        assert (await host.call("probe.ping")).success
    assert ProbeSlice.seen["start"] == {
        "serving": serving,
        "stopping": False,
        "env": env,
        "slices": ["probe"],
        "plugin": "ok",
        "instance": True,  # initialized: the slice may serve calls from its own start()
        "gateway": "loopback",
    }
    assert ProbeSlice.seen["metrics"] == ["probe.ping"]  # the first call was recorded when the second ran
    assert ProbeSlice.seen["stop"] == {"stopping": True, "instance": None}


def test_without_a_host_the_context_reads_the_process_environment(tmp_path: Path) -> None:
    ctx = SliceContext("alone", tmp_path)
    assert ctx.host is None and ctx.env is os.environ
    assert not ctx.has_slice("anything")
