"""Self-improvement with the installed slices: the scheduling slice runs improvement cycles (a job whose
target is ``improve.run_cycle``), and the improve slice deploys an approved change by hot reload."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from refactorbot.testing import ModelServer, build_host, loopback_config

pytestmark = pytest.mark.asyncio

FLAKY = '''
from pydantic import Field
from refactorbot import AtomicSlice, RefactorbotError, SliceConfig, hookimpl, operation

REFACTORBOT_API = 1


class FlakyConfig(SliceConfig):
    failure_rate: float = Field(0.0, ge=0, le=1)


class Flaky(AtomicSlice):
    """Fails a configured share of its calls."""

    slice_id = "flaky"
    uses_database = False
    Config = FlakyConfig
    calls = 0

    @operation
    async def work(self) -> int:
        """Do one unit of work."""
        self.calls += 1
        if int(self.calls * self.config.failure_rate) > int((self.calls - 1) * self.config.failure_rate):
            raise RefactorbotError("upstream timed out")
        return self.calls


@hookimpl
def register_slices(register):
    register(Flaky)
'''

ACTION = {
    "kind": "config",
    "target": "failure_rate",
    "change": 0.0,
    "rationale": "upstream timeouts",
    "expected_effect": "no failed calls",
    "risk": "low",
}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "site"
    info = folder / "rb_flaky-1.0.dist-info"
    info.mkdir(parents=True)
    (folder / "rb_flaky.py").write_text(textwrap.dedent(FLAKY))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rb-flaky\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[refactorbot]\nrb_flaky = rb_flaky\n")
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("rb_flaky", None)


async def test_a_scheduled_cycle_is_auto_applied_by_hot_reload(tmp_path: Path, site: Path) -> None:
    env = {"RB_LOAD_PLUGINS": "refactorbot-slice-improve,refactorbot-slice-scheduling,rb-flaky"}
    with ModelServer() as model:
        model.script(json.dumps({"actions": [ACTION], "notes": "timeouts"}))
        config = {
            "core": {"health_interval": 3600, "timezone": "UTC"},
            "slices": {
                "flaky": {"failure_rate": 0.25},
                "improve": {"auto_apply": ["config"], "min_calls": 8},
                "scheduling": {"heartbeat_every": 0, "alerts_every": 0, "diagnostics_every": 0},
            },
            **loopback_config(model),
        }
        host = build_host(
            tmp_path / "home", ["refactorbot.testing.loopback"], config=config, env=env, load_installed=True
        )
        async with host:
            for _ in range(8):
                await host.call("flaky.work")
            target = {
                "type": "operation",
                "operation": "improve.run_cycle",
                "payload": {"slice_id": "flaky", "trigger": "schedule"},
            }
            added = await host.call("scheduling.add", name="improve-flaky", every="1d", target=target)
            assert added.success, added.error_message
            ran = await host.call("scheduling.run_now", name="improve-flaky")
            assert ran.success, ran.error_message
            [cycle] = (await host.call("improve.cycles")).data
            assert cycle["trigger"] == "schedule"
            [change] = cycle["changes"]
            assert (change["status"], change["decided_by"]) == ("evaluating", "auto_apply")
            assert host.instance("flaky").config.failure_rate == 0.0
            for _ in range(8):
                assert (await host.call("flaky.work")).success
            [kept] = (await host.call("improve.evaluate")).data["concluded"]
            assert (kept["verdict"], kept["status"]) == ("better", "kept")
