"""The merge queue's other paths on real git: a red merge undone and re-queued; a task failing after
``max_attempts`` while the others merge; ``--land`` fast-forwarding the target branch, and refusing
when it is not a fast-forward."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import greet_repo
import pytest
from refactorbot.testing import ModelServer, host_running
from refactory_fixtures import PLUGINS, config, finished, git, nothing_locked


async def _run(
    home: Path, repo: Path, server: ModelServer, *, land: bool, before: Any = None, **settings: Any
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any]]:
    """Request, plan, orchestrate with 2 coders; return the orchestration, the tasks by title, the plan."""
    async with host_running(home, PLUGINS, config=config(server, **settings)) as host:
        request = await host.call(
            "refactory.create_request", title="Greeter", repo=str(repo), test_command=greet_repo.test_command()
        )
        assert request.success, request.error_message
        plan = await host.call("refactory.create_plan", request_id=request.data["id"])
        assert plan.success, plan.error_message
        if before is not None:
            before()
        started = await host.call("refactory.orchestrate", plan_id=plan.data["id"], agents=2, land=land)
        assert started.success, started.error_message
        orch = await finished(host, started.data["id"])
        listed = await host.call("refactory.list_tasks", plan_id=plan.data["id"])
        tasks = {t["title"]: t for t in listed.data["tasks"]}
        full = {title: (await host.call("refactory.get_task", id=t["id"])).data for title, t in tasks.items()}
    return orch, full, dict(plan.data)


@pytest.mark.asyncio
async def test_a_red_merge_is_undone_requeued_with_both_intents_and_lands(tmp_path: Path) -> None:
    repo = greet_repo.build(tmp_path / "repo")
    with ModelServer(responder=greet_repo.responder(fix_on_requeue=True)) as server:
        orch, tasks, plan = await _run(tmp_path / "home", repo, server, land=True)
    report = orch["report"]
    assert orch["status"] == "done", report
    assert report["tests_green"] and report["failed"] == [] and len(report["merged"]) == 4
    tone = tasks["Shout the tone"]
    outcomes = [(a["task_id"], a["outcome"]) for a in orch["attempts"]]
    red = [a for a in orch["attempts"] if a["outcome"] == "red"]
    assert [a["task_id"] for a in red] == [tone["id"]], outcomes
    assert f"task {tasks['Implement greet']['id']}'s acceptance command fails" in red[0]["detail"]
    assert "AssertionError: 'HELLO world' != 'hello world'" in red[0]["detail"]
    # Undone: the red attempt's merge commit is not on the integration branch.
    integration = report["integration_branch"]
    assert red[0]["after_head"] is None
    merges = git(repo, "log", "--merges", "--format=%s", f"{plan['base_commit']}..{integration}").splitlines()
    assert len(merges) == 4 and sum(f"task {tone['id']} " in m for m in merges) == 1
    # Re-queued on top of the integration branch with both intents in its prompt, then merged.
    assert tone["attempts"] == 2 and tone["state"] == "merged"
    context = tone["requeue_context"]
    assert "This task was re-queued: red after merge" in context
    greet = tasks["Implement greet"]
    assert f"- task {greet['id']} (Implement greet): greet() returns the tone followed by ' world'." in context
    assert f"- task {tone['id']} (Shout the tone): tone() returns 'HELLO'" in context
    assert "'HELLO world' != 'hello world'" in context
    assert tone["start_commit"] != plan["base_commit"]
    assert any("outside its scope" in r for r in tone["risks"])  # the fix touched lib.py too
    assert git(repo, "show", f"{integration}:lib.py").endswith('return tone().lower() + " world"')
    # --land: every task merged and the tests are green, so main (checked out, clean) was
    # fast-forwarded to the integration head, work tree included.
    assert report["landed"] is True and report["land"].startswith("main fast-forwarded to ")
    assert git(repo, "rev-parse", "main") == report["integration_head"] == git(repo, "rev-parse", integration)
    assert (repo / "NOTES.md").is_file() and git(repo, "status", "--porcelain") == ""
    nothing_locked(repo)


@pytest.mark.asyncio
async def test_a_task_failing_after_max_attempts_is_reported_and_the_others_still_merge(tmp_path: Path) -> None:
    repo = greet_repo.build(tmp_path / "repo")
    base = git(repo, "rev-parse", "main")
    with ModelServer(responder=greet_repo.responder(fix_on_requeue=False)) as server:
        orch, tasks, _plan = await _run(tmp_path / "home", repo, server, land=True, max_attempts=2)
    report = orch["report"]
    assert orch["status"] == "finished_with_failures", report
    tone, notes = tasks["Shout the tone"], tasks["Document the tone"]
    assert sorted(m["title"] for m in report["merged"]) == ["Add a README", "Implement greet"]
    failed = {f["title"]: f["reason"] for f in report["failed"]}
    assert failed["Shout the tone"].startswith("red after merge: task ")
    assert failed["Shout the tone"].endswith("(after 2 attempts)")
    assert failed["Document the tone"] == f"dependency task {tone['id']} failed"
    assert tone["state"] == "failed" and tone["attempts"] == 2 and notes["attempts"] == 0
    assert [a["outcome"] for a in orch["attempts"] if a["task_id"] == tone["id"]] == ["red", "red"]
    # The integration branch holds what merged green, and not the failed task.
    integration = report["integration_branch"]
    assert git(repo, "show", f"{integration}:tone.py").endswith('return "hello"')
    assert "README.md" in git(repo, "ls-tree", "--name-only", integration)
    # Asked to land, but a task failed: main is untouched and the report says why.
    assert report["landed"] is False and report["land"] == "not landed: some tasks failed or the tests are red"
    assert git(repo, "rev-parse", "main") == base
    nothing_locked(repo)


@pytest.mark.asyncio
async def test_land_is_refused_when_the_target_branch_moved(tmp_path: Path) -> None:
    repo = greet_repo.build(tmp_path / "repo")

    def move_main() -> None:  # someone commits to main after the plan pinned its base
        (repo / "CHANGELOG").write_text("unrelated\n")
        git(repo, "add", "CHANGELOG")
        git(repo, "commit", "-q", "-m", "meanwhile on main")

    with ModelServer(responder=greet_repo.responder(fix_on_requeue=True)) as server:
        orch, _tasks, plan = await _run(tmp_path / "home", repo, server, land=True, before=move_main)
    moved = git(repo, "rev-parse", "main")
    report = orch["report"]
    assert moved != plan["base_commit"] and report["tests_green"] and len(report["merged"]) == 4
    assert report["landed"] is False
    assert report["land"] == "not landed: main moved and is not an ancestor of the integration branch"
    assert git(repo, "rev-parse", "main") == moved  # never rewritten
    nothing_locked(repo)
