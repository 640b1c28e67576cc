"""A code change end to end: the slice's distribution is a real git checkout installed editable; the
scripted model plays the slice's brain, Refactory's planner, coder and reviewer. The change is planned,
coded on a worktree, merged, tested with the distribution's own tests, landed on request, hot-reloaded,
evaluated worse and rolled back by a revert commit and a reload — every step in the audit trail."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FLAKY, drive, next_event, ok
from refactorbot import git_environment
from refactorbot.testing import ModelServer, Reply, build_host, loopback_config

pytestmark = pytest.mark.asyncio

PARTS = (
    "refactorbot-slice-improve",
    "rb-flaky",
    "refactorbot-slice-refactory",
    "refactorbot-slice-agent",
    "refactorbot-slice-tools",
    "refactorbot-tools-files",
)
ENV = {"RB_LOAD_PLUGINS": ",".join(PARTS)}
SOURCE = "src/rb_flaky.py"
#: The coder's change: "remember the upstream's answers" — and every other call now fails.
HARMFUL = (
    "        rate = self.config.failure_rate\n",
    "        rate = 0.5  # answers cached: refresh every other call\n",
)
TESTS = """
import rb_flaky


def test_registers_the_flaky_slice():
    assert rb_flaky.Flaky.slice_id == "flaky"
    assert rb_flaky.FlakyConfig().failure_rate == 0.0
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, env=git_environment(home=repo.parent), capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``rb-flaky`` as a git checkout (src layout, its own tests) installed editable, as pip would."""
    repo = tmp_path / "rb-flaky"
    (repo / "src").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / SOURCE).write_text(textwrap.dedent(FLAKY))
    (repo / "tests" / "test_flaky.py").write_text(textwrap.dedent(TESTS))
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "rb-flaky"\nversion = "1.0"\n\n[tool.pytest.ini_options]\npythonpath = ["src"]\n'
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=dev", "-c", "user.email=dev@example.invalid", "commit", "-q", "-m", "flaky slice")
    site = tmp_path / "site"
    info = site / "rb_flaky-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rb-flaky\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[refactorbot]\nrb_flaky = rb_flaky\n")
    (info / "direct_url.json").write_text(json.dumps({"url": repo.as_uri(), "dir_info": {"editable": True}}))
    (site / "__editable__.rb_flaky-1.0.pth").write_text(f"{repo / 'src'}\n")
    (info / "RECORD").write_text("__editable__.rb_flaky-1.0.pth,,\nrb_flaky-1.0.dist-info/METADATA,,\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(repo / "src"))  # what site.py does with the .pth file
    yield repo
    sys.modules.pop("rb_flaky", None)


def code_action() -> dict[str, Any]:
    return {
        "kind": "code",
        "target": "rb_flaky.Flaky.work",
        "change": "Remember the upstream's answers between calls instead of asking it every time.",
        "rationale": "users say work is slow",
        "expected_effect": "lower p95 latency of work",
        "risk": "medium",
        "title": "Cache upstream answers in work",
    }


def responder(body: dict[str, Any]) -> Any:
    """Play the slice's brain, Refactory's planner, its coder and its reviewer."""
    messages = body.get("messages") or []
    system = str(messages[0].get("content") or "") if messages and messages[0].get("role") == "system" else ""
    first_user = next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")
    if system.startswith("You improve one slice"):
        return Reply.text(json.dumps({"actions": [code_action()], "notes": "slow upstream"}))
    if "You are the planner" in first_user:
        task = {
            "key": "cache",
            "title": "Cache upstream answers in work",
            "detail": "Flaky.work remembers the upstream's answers.",
            "scope": [SOURCE],
            "acceptance": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        }
        return Reply.text(json.dumps({"design": "# Cache\n\nOne task in src/rb_flaky.py.", "tasks": [task]}))
    if "You review one task's diff" in system:
        return Reply.text("The diff changes work in src/rb_flaky.py only.")
    if "working on task" in first_user:
        results = [m for m in messages if m.get("role") == "tool"]
        if not results:
            return Reply.tool_call("files_read", {"path": SOURCE})
        if len(results) == 1:
            source = str(results[0].get("content") or "")
            assert HARMFUL[0] in source, source
            return Reply.tool_call("files_write", {"path": SOURCE, "content": source.replace(*HARMFUL)})
        return Reply.text("work now caches the upstream's answers.")
    return Reply.text(f"unexpected request: {first_user[:200]}")


def host_for(home: Path, server: ModelServer, **improve: Any) -> Any:
    config: dict[str, Any] = {
        "core": {"health_interval": 3600},
        "slices": {
            "flaky": {"brain_model": "loopback/brain-model"},
            "improve": {"min_calls": 20, "eval_window": 3600, **improve},
            "agent": {"resources": {"timeout": 600}},
            "refactory": {"resources": {"timeout": 600}, "use_model_reviewer": True},
        },
        **loopback_config(server),
    }
    return build_host(home, ["refactorbot.testing.loopback"], config=config, env=ENV, load_installed=True)


def steps(audit: list[dict[str, Any]]) -> list[str]:
    return [entry["step"] for entry in audit]


async def test_code_change_through_refactory_landed_evaluated_worse_and_reverted(
    tmp_path: Path, checkout: Path
) -> None:
    original = (checkout / SOURCE).read_text()
    base = git(checkout, "rev-parse", "main")
    with ModelServer(responder=responder) as server:
        host = host_for(tmp_path / "home", server)
        async with host:
            improve = host.instance("improve")
            assert await drive(host, 20) == 0
            cycle = await ok(
                host,
                "improve.run_cycle",
                slice_id="flaky",
                trigger="test",
                feedback={"source": "user", "summary": "work is slow"},
            )
            [change] = cycle["changes"]
            assert (change["kind"], change["status"], change["risk"]) == ("code", "pending", "medium")

            ready = await next_event(host, "improve.ready_to_land")
            approved = await ok(host, "improve.approve", id=change["id"], by="alice", reason="try it")
            assert approved["status"] == "coding" and approved["refactory_request"] is not None
            event = await ready
            assert event.payload["change_id"] == change["id"]

            waiting = await ok(host, "improve.change", id=change["id"])
            state = waiting["previous"]
            assert waiting["status"] == "ready_to_land", waiting["reason"]
            assert state["branch"] == "main" and state["integration"] == f"refactory/{state['plan_id']}/integration"
            assert git(checkout, "rev-parse", "main") == base  # nothing landed without being asked
            assert git(checkout, "rev-parse", state["integration"]) == state["integration_head"]
            assert "the distribution's tests passed" in waiting["candidate"]
            assert (checkout / SOURCE).read_text() == original

            landed = await ok(host, "improve.land", id=change["id"], by="bob")
            assert landed["status"] == "evaluating", landed["reason"]
            assert git(checkout, "rev-parse", "main") == state["integration_head"]
            assert HARMFUL[1] in (checkout / SOURCE).read_text()
            assert "+" + HARMFUL[1].rstrip("\n") in landed["diff"]
            assert await drive(host, 20) == 10  # the reloaded code runs: every other call fails

            evaluated = await ok(host, "improve.evaluate")
            [done] = evaluated["concluded"]
            assert (done["id"], done["verdict"], done["status"]) == (change["id"], "worse", "rolled_back")
            revert = done["previous"]["revert_commit"]
            assert git(checkout, "rev-parse", "main") == revert
            assert git(checkout, "rev-parse", "main^") == state["integration_head"]
            assert git(checkout, "log", "-1", "--format=%s", "main").startswith("Revert self-improvement change")
            assert git(checkout, "status", "--porcelain") == ""
            assert (checkout / SOURCE).read_text() == original
            assert await drive(host, 20) == 0  # the old code is back, without restarting the host
            assert host.instance("improve") is improve

            audit = await ok(host, "improve.audit", change_id=change["id"])
            assert steps(audit) == [
                "plan",
                "approval",
                "handoff",
                "refactory",
                "refactory",
                "refactory",
                "test",
                "ready",
                "land",
                "deploy",
                "evaluation",
                "revert",
                "rollback",
            ]
            by_step = {entry["step"]: entry for entry in audit}
            assert by_step["approval"]["actor"] == "alice" and by_step["land"]["actor"] == "bob"
            assert "model planner" in audit[3]["detail"] or "(model" in audit[3]["detail"]
            assert "merged task" in audit[5]["detail"] and "green" in audit[5]["detail"]


async def test_code_change_whose_tests_fail_is_not_landed(tmp_path: Path, checkout: Path) -> None:
    base = git(checkout, "rev-parse", "main")
    breaking = ("    failure_rate: float = Field(0.0,", "    failure_rate: float = Field(0.1,")

    def breaking_coder(body: dict[str, Any]) -> Any:
        messages = body.get("messages") or []
        first_user = next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")
        results = [m for m in messages if m.get("role") == "tool"]
        if "working on task" in first_user and len(results) == 1:
            source = str(results[0].get("content") or "")
            return Reply.tool_call("files_write", {"path": SOURCE, "content": source.replace(*breaking)})
        return responder(body)

    with ModelServer(responder=breaking_coder) as server:
        host = host_for(tmp_path / "home", server, code_land=True, auto_apply=["code"], auto_apply_max_risk="medium")
        async with host:
            failed = await next_event(host, "improve.failed")
            cycle = await ok(
                host,
                "improve.run_cycle",
                slice_id="flaky",
                trigger="test",
                feedback={"source": "user", "summary": "work is slow"},
            )
            [change] = cycle["changes"]
            assert change["status"] == "coding" and change["decided_by"] == "auto_apply"
            event = await failed
            assert event.payload["change_id"] == change["id"]
            done = await ok(host, "improve.change", id=change["id"])
            assert done["status"] == "failed"
            assert "task(s) failed" in done["reason"] and done["deployed_at"] is None
            assert git(checkout, "rev-parse", "main") == base
            assert breaking[0] in (checkout / SOURCE).read_text()
            audit = steps(await ok(host, "improve.audit", change_id=change["id"]))
            assert audit[:3] == ["plan", "approval", "handoff"] and audit[-1] == "failure"
            assert "land" not in audit and "deploy" not in audit
