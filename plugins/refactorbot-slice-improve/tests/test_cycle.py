"""The whole cycle with the scripted model: a slice with an induced failure rate gets a plan; a config
change is approved, hot-reloaded without restarting the host, evaluated better and kept; a harmful
second change is evaluated worse and rolled back automatically; each step is in the audit trail."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import ENV, config_action, drive, next_event, ok, plan
from refactorbot.testing import ModelServer, Reply, build_host, loopback_config

pytestmark = pytest.mark.asyncio


def settings(server: ModelServer | None, **improve: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "core": {"health_interval": 3600},
        "slices": {
            "flaky": {"failure_rate": 0.4, "brain_model": "loopback/brain-model"},
            "improve": {"min_calls": 20, "eval_window": 3600, **improve},
        },
    }
    if server is not None:
        config.update(loopback_config(server))
    return config


def host_for(home: Path, server: ModelServer | None, **improve: Any) -> Any:
    plugins = ["refactorbot.testing.loopback"] if server is not None else []
    return build_host(home, plugins, config=settings(server, **improve), env=ENV, load_installed=True)


def steps(audit: list[dict[str, Any]], change_id: int | None = None) -> list[str]:
    return [e["step"] for e in audit if change_id is None or e["change_id"] == change_id]


async def test_plan_approve_deploy_keep_then_harmful_change_rolled_back(tmp_path: Path, flaky_site: Path) -> None:
    with ModelServer() as server:
        server.script(
            Reply.text("The failures come from upstream timeouts; lower the failure rate."),  # not JSON: retried
            Reply.text("```json\n" + plan(config_action("failure_rate", 0.0), notes="timeouts") + "\n```"),
            Reply.text(plan(config_action("failure_rate", 0.5, why="spread load"))),
        )
        host = host_for(tmp_path / "home", server)
        async with host:
            improve_before = host.instance("improve")
            assert await drive(host, 20) == 8

            cycle = await ok(host, "improve.run_cycle", slice_id="flaky", trigger="test")
            assert cycle["status"] == "planned" and cycle["metrics"]["errors"] == 8
            [change] = cycle["changes"]
            assert (change["kind"], change["target"], change["change"], change["status"]) == (
                "config",
                "failure_rate",
                0.0,
                "pending",
            )
            # the brain saw the failures and the settings, and was told once why its answer was refused
            first = server.requests[0]
            assert first["model"].endswith("brain-model")
            evidence = first["messages"][-1]["content"]
            assert "upstream timed out after 30s" in evidence and "failure_rate" in evidence
            assert "That answer is invalid: not a JSON object" in server.requests[1]["messages"][-1]["content"]

            flaky_before = host.instance("flaky")
            deployed = await ok(host, "improve.approve", id=change["id"], by="alice", reason="looks right")
            assert deployed["status"] == "evaluating", deployed["reason"]
            overrides = tmp_path / "home" / "overrides" / "flaky.json"
            assert json.loads(overrides.read_text()) == {"failure_rate": 0.0}
            assert stat.S_IMODE(overrides.stat().st_mode) == 0o600
            assert '+  "failure_rate": 0.0' in deployed["diff"]
            assert deployed["before_metrics"]["error_rate"] == pytest.approx(0.4)
            # hot reload: a new flaky instance on the new setting; the host and the other slices kept running
            assert host.instance("flaky") is not flaky_before
            assert host.instance("flaky").config.failure_rate == 0.0
            assert host.instance("improve") is improve_before
            assert (tmp_path / "home" / "refactorbot.toml").read_text().count("failure_rate = 0.4") == 1

            waiting = await ok(host, "improve.evaluate", id=change["id"])
            assert waiting == {"concluded": [], "waiting": [f"change {change['id']}: 0 of 20 calls since the deploy"]}
            assert await drive(host, 20) == 0
            evaluated = await next_event(host, "improve.evaluated")
            result = await ok(host, "improve.evaluate")
            [kept] = result["concluded"]
            assert (kept["verdict"], kept["status"]) == ("better", "kept")
            assert kept["after_metrics"]["calls"] == 20 and kept["after_metrics"]["error_rate"] == 0.0
            assert (await evaluated).payload["verdict"] == "better"

            shown = await ok(host, "improve.show", id=cycle["id"])
            assert steps(shown["audit"]) == [
                "cycle",
                "plan",
                "plan",
                "approval",
                "candidate",
                "deploy",
                "evaluation",
                "keep",
            ]
            approval = next(e for e in shown["audit"] if e["step"] == "approval")
            assert (approval["actor"], approval["detail"]) == ("alice", "looks right")

            # a second, harmful change: evaluated worse, rolled back on its own
            second = await ok(
                host,
                "improve.run_cycle",
                slice_id="flaky",
                trigger="test",
                feedback={"source": "user", "summary": "work is slow at peak hours"},
            )
            [harmful] = second["changes"]
            assert (await ok(host, "improve.approve", id=harmful["id"]))["status"] == "evaluating"
            assert json.loads(overrides.read_text()) == {"failure_rate": 0.5}
            assert await drive(host, 20) == 10
            [rolled] = (await ok(host, "improve.evaluate", id=harmful["id"]))["concluded"]
            assert (rolled["verdict"], rolled["status"]) == ("worse", "rolled_back")
            assert rolled["before_metrics"]["calls"] == 20 and rolled["before_metrics"]["errors"] == 0
            assert json.loads(overrides.read_text()) == {"failure_rate": 0.0}
            assert host.instance("flaky").config.failure_rate == 0.0
            assert await drive(host, 10) == 0
            trail = (await ok(host, "improve.show", id=second["id"]))["audit"]
            assert steps(trail, harmful["id"]) == ["plan", "approval", "candidate", "deploy", "evaluation", "rollback"]
            assert "error rate 0.0% → 50.0%" in next(e["detail"] for e in trail if e["step"] == "evaluation")

        # durable: a new host reads the same trail and runs flaky with the kept setting
        async with host_for(tmp_path / "home", server) as again:
            assert again.instance("flaky").config.failure_rate == 0.0
            changes = await ok(again, "improve.changes")
            assert [(c["id"], c["status"]) for c in changes] == [(harmful["id"], "rolled_back"), (change["id"], "kept")]
