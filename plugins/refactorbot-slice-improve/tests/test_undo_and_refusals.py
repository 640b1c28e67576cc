"""Undoing a change by hand, decisions refused for the state a change is in, a slice whose own
``self_improve`` breaks, a change aimed at the improve slice itself, and evaluation timers re-armed
when the host starts again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import config_action, drive, ok, plan
from refactorbot import AtomicSlice, ImprovementFeedback
from refactorbot.testing import ModelServer, build_host, loopback_config, plugin_of
from test_cycle import host_for

pytestmark = pytest.mark.asyncio


async def test_rollback_by_hand_and_decisions_refused_for_the_state_of_the_change(
    tmp_path: Path, flaky_site: Path
) -> None:
    home = tmp_path / "home"
    overrides = home / "overrides" / "flaky.json"
    with ModelServer() as server:
        server.script(plan(config_action("failure_rate", 0.0)), plan(config_action("failure_rate", 0.1)))
        async with host_for(home, server) as host:
            assert await drive(host, 20) == 8
            [change] = (await ok(host, "improve.run_cycle", slice_id="flaky"))["changes"]
            cid = change["id"]

            not_deployed = await host.call("improve.rollback", id=cid)
            assert not_deployed.error_message == f"change {cid} is a pending config change: nothing to undo here"
            not_ready = await host.call("improve.land", id=cid)
            assert not_ready.error_message == f"change {cid} is pending, not ready_to_land"
            not_evaluating = await host.call("improve.evaluate", id=cid)
            assert not_evaluating.error_message == f"change {cid} is pending, not being evaluated"

            assert (await ok(host, "improve.approve", id=cid))["status"] == "evaluating"
            assert json.loads(overrides.read_text()) == {"failure_rate": 0.0}
            assert host.instance("flaky").config.failure_rate == 0.0

            # a second change to the same setting, deployed after the first: that one is undone first
            assert await drive(host, 20) == 0
            evaluated = await ok(host, "improve.evaluate", id=cid)
            assert [c["status"] for c in evaluated["concluded"]] == ["kept"]
            assert await drive(host, 20) == 0
            [newer] = (
                await ok(
                    host, "improve.run_cycle", slice_id="flaky", feedback={"source": "user", "summary": "slow at peak"}
                )
            )["changes"]
            assert (await ok(host, "improve.approve", id=newer["id"]))["status"] == "evaluating"
            blocked = await host.call("improve.rollback", id=cid)
            assert blocked.error_message == f"change {newer['id']} changed failure_rate since: roll that one back first"

            undone = await ok(host, "improve.rollback", id=newer["id"], by="carol", reason="spikes at noon")
            assert (undone["status"], undone["decided_by"], undone["reason"]) == (
                "rolled_back",
                "carol",
                "spikes at noon",
            )
            assert undone["concluded_at"] is not None
            assert json.loads(overrides.read_text()) == {"failure_rate": 0.0}
            assert host.instance("flaky").config.failure_rate == 0.0

            by_default = await ok(host, "improve.rollback", id=cid)
            assert (by_default["status"], by_default["reason"]) == ("rolled_back", "rolled back by hand")
            assert host.instance("flaky").config.failure_rate == 0.4  # back to refactorbot.toml

            rejected = await host.call("improve.reject", id=cid)
            assert rejected.error_message == (
                f"change {cid} is rolled_back: only pending, approved or ready_to_land changes are rejected"
            )
            trail = await ok(host, "improve.audit", change_id=newer["id"])
            assert [(e["step"], e["actor"], e["detail"]) for e in trail][-1] == ("rollback", "carol", "spikes at noon")


async def test_evaluation_resumes_after_a_restart(tmp_path: Path, flaky_site: Path) -> None:
    home = tmp_path / "home"
    with ModelServer() as server:
        server.script(plan(config_action("failure_rate", 0.0)))
        async with host_for(home, server) as host:
            assert await drive(host, 20) == 8
            [change] = (await ok(host, "improve.run_cycle", slice_id="flaky"))["changes"]
            assert (await ok(host, "improve.approve", id=change["id"]))["status"] == "evaluating"
    # a new host over the same home: the change is still being evaluated and concludes there
    async with host_for(home, None) as host:
        assert host.instance("flaky").config.failure_rate == 0.0
        assert await drive(host, 20) == 0
        [kept] = (await ok(host, "improve.evaluate"))["concluded"]
        assert (kept["id"], kept["verdict"], kept["status"]) == (change["id"], "better", "kept")
        nothing = await ok(host, "improve.evaluate")
        assert nothing == {"concluded": [], "waiting": []}


class Crashing(AtomicSlice):
    """A slice whose own improvement plan cannot be made."""

    slice_id = "crashing"
    uses_database = False

    async def self_improve(self, feedback: ImprovementFeedback) -> Any:
        """Fail the way a broken plan does."""
        raise ValueError("metrics table is\nmissing")


async def test_a_broken_self_improve_is_a_failed_cycle_with_the_reason(tmp_path: Path) -> None:
    plugins = ["refactorbot_slice_improve.plugin", plugin_of(slices=[Crashing])]
    config = {"core": {"health_interval": 3600}}
    async with build_host(tmp_path / "home", plugins, config=config, env={}) as host:
        cycle = await ok(host, "improve.run_cycle", slice_id="crashing", trigger="test")
        reason = "crashing.self_improve raised ValueError: metrics table is missing"
        assert (cycle["status"], cycle["error"], cycle["changes"]) == ("failed", reason, [])
        trail = await ok(host, "improve.audit", cycle_id=cycle["id"])
        assert [(e["step"], e["detail"]) for e in trail] == [("failure", reason)]


async def test_the_improve_slice_does_not_deploy_to_itself(tmp_path: Path) -> None:
    with ModelServer() as server:
        server.script(plan(config_action("min_calls", 5)))
        config = {
            "core": {"health_interval": 3600},
            "slices": {"improve": {"brain_model": "loopback/brain-model"}},
            **loopback_config(server),
        }
        plugins = ["refactorbot_slice_improve.plugin", "refactorbot.testing.loopback"]
        async with build_host(tmp_path / "home", plugins, config=config, env={}) as host:
            for number in range(20):  # calls that fail: the improve slice's own error rate
                assert not (await host.call("improve.show", id=900 + number)).success
            [change] = (await ok(host, "improve.run_cycle", slice_id="improve"))["changes"]
            assert (change["kind"], change["target"], change["change"]) == ("config", "min_calls", 5)
            refused = await ok(host, "improve.approve", id=change["id"])
            assert (refused["status"], refused["reason"]) == (
                "failed",
                "the improve slice does not deploy changes to itself",
            )
        assert not (tmp_path / "home" / "overrides" / "improve.json").exists()
