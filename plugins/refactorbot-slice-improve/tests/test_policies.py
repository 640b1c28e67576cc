"""Plans without a model, invalid plans, auto_apply and risk, refused candidates, the window's end,
and prompt changes through a slice that keeps prompt versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import ENV, config_action, drive, next_event, ok, plan
from pydantic import Field
from refactorbot import AtomicSlice, Model, RefactorbotError, operation
from refactorbot.testing import ModelServer, build_host, loopback_config, plugin_of
from test_cycle import host_for, settings

pytestmark = pytest.mark.asyncio


async def test_without_a_model_the_plan_is_rule_based(tmp_path: Path, flaky_site: Path) -> None:
    async with host_for(tmp_path / "home", None) as host:
        healthy = await ok(host, "improve.run_cycle", slice_id="flaky")
        assert healthy["notes"] == "all checks passed" and healthy["changes"] == []
        assert await drive(host, 20) == 8
        cycle = await ok(host, "improve.run_cycle", slice_id="flaky")
        assert cycle["changes"] == []
        assert "brain unavailable (no LLM gateway is installed" in cycle["notes"] and "rule-based" in cycle["notes"]
        titles = [p["title"] for p in cycle["plan"]["proposals"]]
        assert titles == ["Fix failing check 'error_rate:flaky.work'"]


async def test_healthy_slice_costs_no_model_call(tmp_path: Path, flaky_site: Path) -> None:
    with ModelServer() as server:
        async with host_for(tmp_path / "home", server) as host:
            cycle = await ok(host, "improve.run_cycle", slice_id="flaky")
            assert cycle["notes"] == "all checks passed" and server.requests == []


async def test_an_invalid_setting_twice_falls_back_to_rules(tmp_path: Path, flaky_site: Path) -> None:
    with ModelServer() as server:
        server.script(plan(config_action("failure_rate", 7)), plan(config_action("retries", 3)))
        async with host_for(tmp_path / "home", server) as host:
            await drive(host, 20)
            cycle = await ok(host, "improve.run_cycle", slice_id="flaky")
        assert cycle["changes"] == []
        assert "'retries' is not a setting of this slice (settings: broken_start, failure_rate)" in cycle["notes"]
        retry = server.requests[1]["messages"][-1]["content"]
        assert "actions.0: setting failure_rate=7 is invalid" in retry and "less than or equal to 1" in retry


async def test_auto_apply_lets_low_risk_config_through_and_holds_the_rest(tmp_path: Path, flaky_site: Path) -> None:
    with ModelServer() as server:
        server.script(
            plan(
                config_action("failure_rate", 0.1, risk="low"),
                config_action("failure_rate", 0.0, risk="medium"),
            )
        )
        async with host_for(tmp_path / "home", server, auto_apply=["config"]) as host:
            await drive(host, 20)
            cycle = await ok(host, "improve.run_cycle", slice_id="flaky")
            low, medium = cycle["changes"]
            assert (low["status"], low["decided_by"]) == ("evaluating", "auto_apply")
            assert medium["status"] == "pending"
            assert host.instance("flaky").config.failure_rate == 0.1
            # approved now, it waits behind the change being evaluated, then deploys once that one is concluded
            assert (await ok(host, "improve.approve", id=medium["id"]))["status"] == "approved"
            await drive(host, 20)
            result = await ok(host, "improve.evaluate")
            assert [c["status"] for c in result["concluded"]] == ["kept"]
            assert (await ok(host, "improve.change", id=medium["id"]))["status"] == "evaluating"
            assert host.instance("flaky").config.failure_rate == 0.0
            pending = await ok(host, "improve.changes", status="pending")
            assert pending == []


async def test_a_candidate_that_cannot_start_is_never_deployed(tmp_path: Path, flaky_site: Path) -> None:
    with ModelServer() as server:
        server.script(plan(config_action("broken_start", True)))
        async with host_for(tmp_path / "home", server) as host:
            await drive(host, 20)
            running = host.instance("flaky")
            [change] = (await ok(host, "improve.run_cycle", slice_id="flaky"))["changes"]
            failed = await ok(host, "improve.approve", id=change["id"])
            assert failed["status"] == "failed"
            assert failed["reason"] == "the candidate failed: RuntimeError: cannot reach the upstream at start"
            assert not (tmp_path / "home" / "overrides" / "flaky.json").exists()
            assert host.instance("flaky") is running
            trail = await ok(host, "improve.audit", change_id=change["id"])
            assert [e["step"] for e in trail] == ["plan", "approval", "failure"]


async def test_a_setting_fixed_by_the_environment_is_refused(tmp_path: Path, flaky_site: Path) -> None:
    with ModelServer() as server:
        server.script(plan(config_action("failure_rate", 0.0)))
        env = {**ENV, "RB_FLAKY_FAILURE_RATE": "0.4"}
        host = build_host(
            tmp_path / "home", ["refactorbot.testing.loopback"], config=settings(server), env=env, load_installed=True
        )
        async with host:
            await drive(host, 20)
            [change] = (await ok(host, "improve.run_cycle", slice_id="flaky"))["changes"]
            failed = await ok(host, "improve.approve", id=change["id"])
        assert failed["reason"] == "failure_rate is set by RB_FLAKY_FAILURE_RATE, which an override cannot change"


async def test_the_window_end_concludes_without_enough_calls(tmp_path: Path, flaky_site: Path) -> None:
    with ModelServer() as server:
        server.script(plan(config_action("failure_rate", 0.0)))
        async with host_for(tmp_path / "home", server, eval_window=0.2) as host:
            await drive(host, 20)
            [change] = (await ok(host, "improve.run_cycle", slice_id="flaky"))["changes"]
            evaluated = await next_event(host, "improve.evaluated")
            await ok(host, "improve.approve", id=change["id"])
            event = await evaluated
            assert event.payload == {
                "change_id": change["id"],
                "slice_id": "flaky",
                "verdict": "inconclusive",
                "status": "kept",
            }
            done = await ok(host, "improve.change", id=change["id"])
            assert done["reason"].startswith("too few calls to compare (need 20 on each side)")


async def test_decisions_are_checked(tmp_path: Path, flaky_site: Path) -> None:
    with ModelServer() as server:
        server.script(plan(config_action("failure_rate", 0.0)))
        async with host_for(tmp_path / "home", server) as host:
            await drive(host, 20)
            [change] = (await ok(host, "improve.run_cycle", slice_id="flaky"))["changes"]
            rejected = await ok(host, "improve.reject", id=change["id"], by="bob", reason="not now")
            assert (rejected["status"], rejected["decided_by"]) == ("rejected", "bob")
            again = await host.call("improve.approve", id=change["id"])
            assert again.error_message == f"change {change['id']} is rejected, not pending"
            assert (await host.call("improve.approve", id=999)).error_message == "no change 999"
            absent = await host.call("improve.run_cycle", slice_id="nope")
            assert absent.error_type.value == "slice_unavailable"
            bad = await host.call("improve.run_cycle", slice_id="../etc")
            assert bad.error_type.value == "invalid_payload"


# -- prompt changes --------------------------------------------------------------------------


class PromptName(Model):
    name: str
    version: int | None = None


class SetPrompt(Model):
    name: str
    content: str = Field(min_length=1)
    note: str | None = None


class Rollback(Model):
    name: str
    version: int


class Writer(AtomicSlice):
    """Writes replies from a prompt template it keeps in versions (the agent slice's prompt protocol)."""

    slice_id = "writer"
    uses_database = False
    versions: ClassVar[list[str]] = []

    @operation
    async def get_prompt(self, params: PromptName) -> dict[str, Any]:
        """Return a version of the template (the newest by default)."""
        number = params.version or len(self.versions)
        return {"name": params.name, "version": number, "content": self.versions[number - 1]}

    @operation
    async def set_prompt(self, params: SetPrompt) -> dict[str, Any]:
        """Save a new version."""
        self.versions.append(params.content)
        return {"name": params.name, "version": len(self.versions), "content": params.content}

    @operation
    async def list_prompts(self) -> list[dict[str, Any]]:
        """Return the newest version of each template."""
        return [{"name": "reply", "version": len(self.versions), "content": self.versions[-1]}]

    @operation
    async def rollback_prompt(self, params: Rollback) -> dict[str, Any]:
        """Make an earlier version current again, as a new version."""
        return await self.set_prompt(SetPrompt(name=params.name, content=self.versions[params.version - 1]))

    @operation
    async def reply(self, params: PromptName) -> str:
        """Fail while the template asks for a reply longer than the channel takes."""
        template = self.versions[-1]
        if "at length" in template:
            raise RefactorbotError("reply longer than 4096 characters")
        return template.format(name=params.name)


def prompt_action(text: str) -> dict[str, Any]:
    return {
        "kind": "prompt",
        "target": "reply",
        "change": text,
        "rationale": "replies are cut by the channel",
        "expected_effect": "no more over-long replies",
        "risk": "low",
    }


async def test_prompt_change_auto_applied_then_rolled_back_when_worse(tmp_path: Path) -> None:
    Writer.versions = ["Hello {name}, answer at length."]
    with ModelServer() as server:
        server.script(
            plan(prompt_action("Hello {name}, answer briefly.")),
            plan(prompt_action("Hello {name}, answer briefly and at length.")),
        )
        config = {
            "core": {"health_interval": 3600},
            "slices": {"improve": {"min_calls": 5, "eval_window": 3600, "auto_apply": ["prompt"]}},
            **loopback_config(server),
        }
        plugins = ["refactorbot_slice_improve.plugin", "refactorbot.testing.loopback", plugin_of(slices=[Writer])]
        async with build_host(tmp_path / "home", plugins, config=config, env={}) as host:
            for _ in range(5):
                await host.call("writer.reply", name="ann")
            [good] = (await ok(host, "improve.run_cycle", slice_id="writer"))["changes"]
            assert good["status"] == "evaluating" and good["previous"] == {"version": 1, "new_version": 2}
            assert "-Hello {name}, answer at length.\n+Hello {name}, answer briefly.\n" in good["diff"]
            for _ in range(5):
                await ok(host, "writer.reply", name="ann")
            [kept] = (await ok(host, "improve.evaluate"))["concluded"]
            assert (kept["verdict"], kept["status"]) == ("better", "kept")

            [bad] = (await ok(host, "improve.run_cycle", slice_id="writer", feedback={"summary": "too terse"}))[
                "changes"
            ]
            for _ in range(5):
                await host.call("writer.reply", name="ann")
            [rolled] = (await ok(host, "improve.evaluate"))["concluded"]
            assert (rolled["verdict"], rolled["status"]) == ("worse", "rolled_back")
            assert Writer.versions[-1] == "Hello {name}, answer briefly."
            assert len(Writer.versions) == 4  # the rollback is a new version: history is kept
            trail = await ok(host, "improve.audit", change_id=bad["id"])
            assert [e["step"] for e in trail] == ["plan", "approval", "candidate", "deploy", "evaluation", "rollback"]


async def test_prompt_that_drops_a_placeholder_is_refused(tmp_path: Path) -> None:
    Writer.versions = ["Hello {name}, answer at length."]
    with ModelServer() as server:
        server.script(plan(prompt_action("Hello, answer briefly.")))
        config = {"core": {"health_interval": 3600}, **loopback_config(server)}
        plugins = ["refactorbot_slice_improve.plugin", "refactorbot.testing.loopback", plugin_of(slices=[Writer])]
        async with build_host(tmp_path / "home", plugins, config=config, env={}) as host:
            await host.call("writer.reply", name="ann")
            [change] = (await ok(host, "improve.run_cycle", slice_id="writer"))["changes"]
            failed = await ok(host, "improve.approve", id=change["id"])
        assert failed["reason"] == "the new template drops the placeholders name of the current one"
        assert Writer.versions == ["Hello {name}, answer at length."]


async def test_overrides_are_listed(tmp_path: Path, flaky_site: Path) -> None:
    home = tmp_path / "home"
    (home / "overrides").mkdir(parents=True, mode=0o700)
    (home / "overrides" / "flaky.json").write_text(json.dumps({"failure_rate": 0.25}))
    async with host_for(home, None) as host:
        assert host.instance("flaky").config.failure_rate == 0.25
        [item] = await ok(host, "improve.overrides")
        assert item["slice_id"] == "flaky" and item["settings"] == {"failure_rate": 0.25}


async def test_a_broken_overrides_file_stops_only_its_slice_with_the_reason(tmp_path: Path, flaky_site: Path) -> None:
    home = tmp_path / "home"
    (home / "overrides").mkdir(parents=True, mode=0o700)
    (home / "overrides" / "flaky.json").write_text('{"failure_rate": 0.25,')
    async with host_for(home, None) as host:
        row = next(r for r in host.slice_status() if r["slice_id"] == "flaky")
        assert row["status"] == "failed" and row["error"].startswith(
            f"{home / 'overrides' / 'flaky.json'}: invalid JSON"
        )
        assert host.has_slice("improve")
    (home / "overrides" / "flaky.json").write_text('{"enabled": false}')
    async with host_for(home, None) as host:
        row = next(r for r in host.slice_status() if r["slice_id"] == "flaky")
        assert row["error"].endswith("enabled cannot be overridden (set them in refactorbot.toml)")
