"""``AtomicSlice.self_improve``'s default: the evidence from the operation log, the brain asked only
when there is something to improve, its answer validated (retried once), and the rule-based plan
when there is no valid answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from refactorbot import AtomicSlice, ImprovementFeedback, Model, RefactorbotError, SliceConfig, operation
from refactorbot.improve import ImprovementAction, actions_of, check_action, config_with
from refactorbot.models import ImprovementPlan, Proposal
from refactorbot.testing import ModelServer, Reply, build_host, loopback_config, plugin_of


class FetcherConfig(SliceConfig):
    retries: int = Field(0, ge=0, le=5, description="retries of a failed fetch")


class Fetcher(AtomicSlice):
    """Fetches documents from an upstream that drops connections."""

    slice_id = "fetcher"
    uses_database = False
    Config = FetcherConfig

    @operation
    async def fetch(self) -> str:
        """Fetch one document; fails while no retry is configured."""
        if self.config.retries == 0:
            raise RefactorbotError("connection reset by peer\n(upstream)")
        return "document"


class Name(Model):
    name: str


class Templated(AtomicSlice):
    """Answers from prompt templates."""

    slice_id = "templated"
    uses_database = False

    @operation
    async def get_prompt(self, params: Name) -> dict[str, Any]:
        """Return a template."""
        return {"name": params.name, "version": 1, "content": "Hello {name}"}

    @operation
    async def set_prompt(self, params: Name) -> dict[str, Any]:
        """Save a template."""
        return {"name": params.name, "version": 2, "content": ""}

    @operation
    async def list_prompts(self) -> list[dict[str, Any]]:
        """Return every template."""
        return [{"name": "greeting", "version": 1, "content": "Hello {name}"}]

    @operation
    async def rollback_prompt(self, params: Name) -> dict[str, Any]:
        """Restore a template."""
        return {"name": params.name, "version": 3, "content": "Hello {name}"}


def action(kind: str, target: str, change: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "target": target,
        "change": change,
        "rationale": "connections drop",
        "expected_effect": "fewer failed fetches",
        "risk": "low",
        "title": f"{kind} {target}",
    }


def host_for(tmp_path: Path, server: ModelServer | None) -> Any:
    config: dict[str, Any] = {"core": {"health_interval": 3600}}
    plugins: list[Any] = [plugin_of(slices=[Fetcher, Templated])]
    if server is not None:
        config.update(loopback_config(server))
        config["slices"] = {"fetcher": {"brain_model": "loopback/brain"}}
        plugins.append("refactorbot.testing.loopback")
    return build_host(tmp_path / "home", plugins, config=config, env={})


@pytest.mark.asyncio
async def test_a_healthy_slice_gets_the_rule_based_plan_without_a_model_call(tmp_path: Path) -> None:
    with ModelServer() as server:
        async with host_for(tmp_path, server) as host:
            plan = await host.instance("fetcher").self_improve(ImprovementFeedback())
        assert (plan.slice_id, plan.proposals, plan.notes) == ("fetcher", [], "all checks passed")
        assert server.requests == []


@pytest.mark.asyncio
async def test_the_brain_sees_the_failures_and_its_fenced_answer_becomes_the_plan(tmp_path: Path) -> None:
    with ModelServer() as server:
        server.script(Reply.text("```json\n" + json.dumps({"actions": [action("config", "retries", 2)]}) + "\n```"))
        async with host_for(tmp_path, server) as host:
            for _ in range(3):
                assert not (await host.call("fetcher.fetch")).success
            plan = await host.instance("fetcher").self_improve(ImprovementFeedback(summary="fetches fail"))
        [request] = server.requests
        assert request["model"].endswith("brain")
        evidence = request["messages"][-1]["content"]
        assert evidence.startswith("Evidence:\n")
        sent = json.loads(evidence.removeprefix("Evidence:\n"))
        assert (sent["metrics"]["calls"], sent["metrics"]["errors"], sent["metrics"]["error_rate"]) == (3, 3, 1.0)
        assert sent["metrics"]["failures"][0]["message"] == "connection reset by peer (upstream)"
        assert sent["description"] == "Fetches documents from an upstream that drops connections."
        assert sent["settings"]["retries"] == 0 and "retries" in sent["settings_schema"]["properties"]
        assert plan.notes == "1 action(s) from loopback/brain"
        [found] = actions_of(plan)
        assert (found.kind, found.target, found.change, found.risk) == ("config", "retries", 2, "low")


@pytest.mark.asyncio
async def test_an_answer_invalid_twice_leaves_the_rule_based_plan_with_the_reason(tmp_path: Path) -> None:
    with ModelServer() as server:
        server.script(
            Reply.text("I would add retries."), Reply.text(json.dumps({"actions": [action("config", "retries", 9)]}))
        )
        async with host_for(tmp_path, server) as host:
            assert not (await host.call("fetcher.fetch")).success
            plan = await host.instance("fetcher").self_improve(ImprovementFeedback(source="ops", summary="flaky"))
        retry = server.requests[1]["messages"]
        assert retry[-2] == {"role": "assistant", "content": "I would add retries."}
        assert retry[-1]["content"].startswith(
            "That answer is invalid: not a JSON object (Expecting value at character 0)"
        )
        assert plan.notes.startswith(
            "all checks passed; brain unavailable (the brain's plan for 'fetcher' is invalid: actions.0: setting retries=9 is invalid:"
        )
        assert plan.notes.endswith("): rule-based")
        assert [(p.title, p.rationale) for p in plan.proposals] == [("Address ops feedback", "flaky")]


@pytest.mark.asyncio
async def test_without_a_gateway_the_plan_is_rule_based_and_prompts_are_evidence(tmp_path: Path) -> None:
    async with host_for(tmp_path, None) as host:
        templated = host.instance("templated")
        plan = await templated.self_improve(ImprovementFeedback(summary="too formal"))
        assert "brain unavailable (no LLM gateway is installed" in plan.notes
        from refactorbot.improve import gather_evidence

        evidence = await gather_evidence(templated, ImprovementFeedback(), [], 3600)
        assert evidence.prompts == {"greeting": "Hello {name}"} and evidence.has_findings is False
        fetcher = host.instance("fetcher")
        assert (await gather_evidence(fetcher, ImprovementFeedback(), [], 3600)).prompts == {}

        prompt = ImprovementAction.model_validate(action("prompt", "greeting", "Hi {name}"))
        check_action(templated, prompt)
        with pytest.raises(ValueError, match="slice 'fetcher' has no prompt templates"):
            check_action(fetcher, prompt)
        with pytest.raises(ValueError, match="a prompt action's change must be the template's whole new text"):
            check_action(templated, ImprovementAction.model_validate(action("prompt", "greeting", "  ")))
        with pytest.raises(ValueError, match="a code action's change must describe the change in words"):
            check_action(fetcher, ImprovementAction.model_validate(action("code", "fetch", {"x": 1})))
        check_action(fetcher, ImprovementAction.model_validate(action("code", "fetch", "retry on reset")))
        with pytest.raises(ValueError, match=r"'timeout' is not a setting of this slice \(settings: .*retries"):
            config_with(fetcher.config, "timeout", 3)
        assert config_with(fetcher.config, "retries", 3).retries == 3  # type: ignore[attr-defined]


def test_proposals_that_are_advice_or_malformed_are_not_actions() -> None:
    good = ImprovementAction.model_validate(action("config", "retries", 1))
    plan = ImprovementPlan(
        slice_id="fetcher",
        proposals=[
            good.to_proposal(),
            Proposal(title="Look into it", rationale="unclear"),  # advice
            Proposal(title="bad", rationale="r", kind="config", changes={"target": "", "change": 1}),  # invalid
        ],
    )
    [only] = actions_of(plan)
    assert only == good
    untitled = ImprovementAction.model_validate({**action("config", "retries", 1), "title": ""})
    assert untitled.to_proposal().title == "config retries"
    bare = Proposal(title="t", rationale="r", kind="config", changes={"target": "retries", "change": 1})
    restored = ImprovementAction.from_proposal(bare)
    assert restored is not None and (restored.expected_effect, restored.risk) == ("not stated", "medium")
