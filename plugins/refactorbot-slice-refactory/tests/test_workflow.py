"""The whole workflow on a real git repository: plan, two coders on worktrees, the merge queue."""

from __future__ import annotations

from pathlib import Path

import pytest
from refactorbot.testing import ModelServer, host_running
from refactorbot_slice_refactory import script
from refactory_fixtures import PLUGINS, config, finished, git, nothing_locked


@pytest.mark.asyncio
async def test_two_coders_conflict_requeued_and_resolved(tmp_path: Path) -> None:
    repo = script.build_repo(tmp_path / "repo")
    base = git(repo, "rev-parse", "main")
    with ModelServer(responder=script.responder) as server:
        async with host_running(tmp_path / "home", PLUGINS, config=config(server)) as host:
            request = await host.call(
                "refactory.create_request",
                title="Make the tests pass",
                description="Implement add, mul and shout.",
                repo=str(repo),
                test_command=script.test_command(),
            )
            assert request.success, request.error_message
            plan = await host.call("refactory.create_plan", request_id=request.data["id"])
            assert plan.success, plan.error_message
            plan = plan.data
            assert plan["planner"] == "model" and plan["base_commit"] == base
            assert [t["title"] for t in plan["tasks"]] == ["Implement add", "Implement mul", "Implement shout"]
            # add and mul may run at once and both touch calc.py: flagged at plan time.
            assert any("share scope: calc.py" in w for w in plan["warnings"]), plan["warnings"]
            started = await host.call("refactory.orchestrate", plan_id=plan["id"], agents=2)
            assert started.success, started.error_message
            assert [
                t["agent"] for t in (await host.call("refactory.list_tasks", plan_id=plan["id"])).data["tasks"]
            ] == [
                "coder1",
                "coder2",
                "coder1",
            ]
            orch = await finished(host, started.data["id"])
            tasks = {t["title"]: t for t in (await host.call("refactory.list_tasks", plan_id=plan["id"])).data["tasks"]}
    report = orch["report"]
    assert orch["status"] == "done", report
    assert report["tests_green"] is True and report["failed"] == []
    assert sorted(m["task"] for m in report["merged"]) == sorted(t["id"] for t in tasks.values())
    # Exactly one of the calc.py tasks conflicted and was redone on top of the integration branch.
    outcomes = [(a["task_id"], a["outcome"]) for a in orch["attempts"]]
    conflicts = [task for task, outcome in outcomes if outcome == "conflict"]
    assert len(conflicts) == 1 and report["conflicts"] == 1, outcomes
    redone = next(t for t in tasks.values() if t["id"] == conflicts[0])
    assert redone["attempts"] == 2 and redone["title"] in ("Implement add", "Implement mul")
    assert sum(1 for _, outcome in outcomes if outcome == "merged") == 3
    # Real branches and commits: each task branch holds a commit naming its task; the integration
    # branch holds three --no-ff merges over the pinned base; main was not touched.
    integration = f"refactory/{plan['id']}/integration"
    assert git(repo, "rev-parse", "main") == base
    assert git(repo, "merge-base", "--is-ancestor", base, integration) == ""
    merges = git(repo, "log", "--merges", "--format=%s", f"{base}..{integration}").splitlines()
    assert len(merges) == 3 and all(m.startswith("refactory: merge task ") for m in merges)
    for task in tasks.values():
        branch = f"refactory/{plan['id']}/{task['id']}"
        assert git(repo, "log", "-1", "--format=%s", branch).startswith(f"refactory: task {task['id']} ")
        assert (
            git(repo, "log", "-1", "--format=%an <%ae>", branch)
            == "refactorbot refactory <refactory@refactorbot.invalid>"
        )
        assert task["acceptance_ok"] is True and task["diff_stat"] and task["review"]
    calc = git(repo, "show", f"{integration}:calc.py")
    assert 'OPERATIONS = ["add", "mul"]' in calc or 'OPERATIONS = ["mul", "add"]' in calc
    # The integration branch's tests pass in a fresh checkout.
    check = tmp_path / "check"
    git(repo, "worktree", "add", "-q", "--detach", str(check), integration)
    ran = __import__("subprocess").run(script.test_command(), cwd=check, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    git(repo, "worktree", "remove", "--force", str(check))
    nothing_locked(repo)
