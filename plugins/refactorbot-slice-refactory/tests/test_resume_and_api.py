"""An interrupted orchestration resumed after a restart; external coder processes through the API;
the planner's validation and retry; refused input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from refactorbot.testing import ModelServer, Reply, host_running
from refactorbot_slice_refactory import script
from refactory_fixtures import PLUGINS, config, finished, git, nothing_locked


async def _plan(host: Any, repo: Path) -> dict[str, Any]:
    request = await host.call(
        "refactory.create_request", title="Make the tests pass", repo=str(repo), test_command=script.test_command()
    )
    assert request.success, request.error_message
    plan = await host.call("refactory.create_plan", request_id=request.data["id"])
    assert plan.success, plan.error_message
    return dict(plan.data)


@pytest.mark.asyncio
async def test_an_interrupted_orchestration_resumes_after_a_restart(tmp_path: Path) -> None:
    repo = script.build_repo(tmp_path / "repo")
    reached, release = threading.Event(), threading.Event()

    def gated(body: dict[str, Any]) -> Any:
        text = json.dumps(body.get("messages"))
        if "Implement shout" in text and "files_read" not in text and not release.is_set():
            reached.set()  # the shout coder's first model call: the host is stopped while it waits
            release.wait(60)
            return Reply.error(503, "the host went away")
        return script.responder(body)

    home = tmp_path / "home"
    with ModelServer(responder=gated) as server:
        async with host_running(home, PLUGINS, config=config(server)) as host:
            plan = await _plan(host, repo)
            started = await host.call("refactory.orchestrate", plan_id=plan["id"], agents=1)
            assert started.success, started.error_message
            assert await asyncio.to_thread(reached.wait, 120)
            tasks = (await host.call("refactory.list_tasks", plan_id=plan["id"])).data["tasks"]
            shout = next(t for t in tasks if t["title"] == "Implement shout")
            assert shout["state"] == "working" and Path(shout["worktree"]).is_dir()
        release.set()
        # Stopped mid-run: the orchestration is still "running" in the database.
        async with host_running(home, PLUGINS, config=config(server)) as host:
            before = (await host.call("refactory.get_orchestration", id=started.data["id"])).data
            assert before["status"] == "running"
            resumed = await host.call("refactory.reconcile", plan_id=plan["id"])
            assert resumed.success, resumed.error_message
            orch = await finished(host, started.data["id"])
            tasks = {t["title"]: t for t in (await host.call("refactory.list_tasks", plan_id=plan["id"])).data["tasks"]}
    assert orch["status"] == "done" and orch["resumes"] == 1, orch["report"]
    assert orch["report"]["tests_green"] and len(orch["report"]["merged"]) == 3
    assert tasks["Implement shout"]["attempts"] == 1  # the interrupted run does not count as an attempt
    assert git(repo, "rev-parse", "main") == plan["base_commit"]
    nothing_locked(repo)


@pytest.mark.asyncio
async def test_external_coders_poll_the_api_and_report_prs(tmp_path: Path) -> None:
    repo = script.build_repo(tmp_path / "repo")
    home = tmp_path / "home"
    plugins = [*PLUGINS, "refactorbot_api.plugin"]
    with ModelServer(responder=script.responder) as server:
        tables = {**config(server), "plugins": {"api": {"port": 0}}}
        async with host_running(home, plugins, config=tables) as host:
            token = (home / "api-token").read_text().strip()
            url = json.loads((home / "server.json").read_text())["url"]
            async with httpx.AsyncClient(base_url=url + "/plugins/refactory", timeout=60) as api:
                assert (await api.get("/requests")).status_code == 401
                api.headers["Authorization"] = f"Bearer {token}"
                bad = await api.post("/requests", json={"title": "x", "repo": str(tmp_path), "target_branch": "main"})
                assert bad.status_code == 409 and "is not a git repository" in bad.json()["detail"]
                bad = await api.post("/requests", json={"title": "x", "repo": str(repo), "target_branch": "-x"})
                assert bad.status_code == 422 and "branch name" in bad.json()["detail"]
                created = await api.post(
                    "/requests",
                    json={"title": "Make the tests pass", "repo": str(repo), "test_command": script.test_command()},
                )
                assert created.status_code == 200, created.text
                assert (await api.get("/requests/999")).status_code == 404
                plan = (await api.post(f"/requests/{created.json()['id']}/plans")).json()
                orch = (
                    await api.post(f"/plans/{plan['id']}/orchestrate", json={"agents": 2, "coders": "external"})
                ).json()
                assert orch["coders"] == "external" and orch["status"] == "running"
                listed = (await api.get("/tasks", params={"planId": plan["id"], "agent": "coder2"})).json()
                assert [t["title"] for t in listed["tasks"]] == ["Implement mul"]
                env = {**os.environ, "RB_HOME": str(home)}
                coders = [
                    await asyncio.create_subprocess_exec(
                        str(Path(sys.executable).parent / "refactorbot"),
                        "refactory",
                        "coder",
                        "--name",
                        name,
                        "--interval",
                        "0.2",
                        env=env,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.STDOUT,
                    )
                    for name in ("coder1", "coder2")
                ]
                try:
                    final = await finished(host, orch["id"])
                finally:
                    for proc in coders:
                        if proc.returncode is None:
                            os.kill(proc.pid, signal.SIGTERM)
                    outputs = [(await proc.communicate())[0].decode() for proc in coders]
                seen = (await api.get(f"/orchestrations/{orch['id']}")).json()
                task = (await api.get(f"/tasks/{plan['tasks'][0]['id']}")).json()
    assert final["status"] == "done", (final["report"], outputs)
    assert seen["report"]["tests_green"] and len(seen["report"]["merged"]) == 3
    assert "reported task" in outputs[0] and "reported task" in outputs[1], outputs
    assert task["diff"].startswith("diff --git") and task["review"] and task["acceptance_ok"] is True
    nothing_locked(repo)


@pytest.mark.asyncio
async def test_the_planner_retries_once_then_refuses_and_cycles_are_refused(tmp_path: Path) -> None:
    repo = script.build_repo(tmp_path / "repo")
    valid = json.loads(script.plan_json())
    cyclic = {
        **valid,
        "tasks": [{**valid["tasks"][0], "depends_on": ["mul"]}, {**valid["tasks"][1], "depends_on": ["add"]}],
    }
    with ModelServer() as server:
        async with host_running(tmp_path / "home", PLUGINS, config=config(server)) as host:
            request = await host.call("refactory.create_request", title="t", repo=str(repo), test_command=["true"])
            server.script(Reply.text("not json at all"), Reply.text(json.dumps(valid)))
            retried = await host.call("refactory.create_plan", request_id=request.data["id"])
            assert retried.success and len(retried.data["tasks"]) == 3
            assert "That plan is invalid: not a JSON object" in server.requests[-1]["messages"][-1]["content"]
            server.script(Reply.text(json.dumps(cyclic)), Reply.text(json.dumps({"design": "d", "tasks": []})))
            refused = await host.call("refactory.create_plan", request_id=request.data["id"])
            assert not refused.success
            assert refused.error_message.startswith("the planner's answer was invalid twice: tasks:")
            assert "cycle among add, mul" in server.requests[-1]["messages"][-1]["content"]
            templated = await host.call("refactory.create_plan", request_id=request.data["id"], planner="template")
            assert templated.success and templated.data["planner"] == "template"
            assert [t["acceptance"] for t in templated.data["tasks"]] == [["true"]]
            missing = await host.call("refactory.create_request", title="t", repo=str(repo), target_branch="nope")
            plan = await host.call("refactory.create_plan", request_id=missing.data["id"], planner="template")
            assert not plan.success and "branch 'nope' does not exist" in plan.error_message


@pytest.mark.asyncio
async def test_a_serving_host_resumes_an_interrupted_orchestration_at_start(tmp_path: Path) -> None:
    """What `refactorbot serve` does at start (a serving host), without reconcile; a one-shot CLI host does not."""
    repo = script.build_repo(tmp_path / "repo")
    reached, release = threading.Event(), threading.Event()

    def gated(body: dict[str, Any]) -> Any:
        text = json.dumps(body.get("messages"))
        if "Implement mul" in text and "files_read" not in text and not release.is_set():
            reached.set()
            release.wait(60)
            return Reply.error(503, "the host went away")
        return script.responder(body)

    home = tmp_path / "home"
    with ModelServer(responder=gated) as server:
        async with host_running(home, PLUGINS, config=config(server)) as host:
            plan = await _plan(host, repo)
            started = await host.call("refactory.orchestrate", plan_id=plan["id"], agents=2)
            assert started.success, started.error_message
            assert await asyncio.to_thread(reached.wait, 120)
        release.set()
        orch_id = started.data["id"]
        # A one-shot command's host (serving=False) reads the orchestration and leaves it interrupted.
        async with host_running(home, PLUGINS, config=config(server), serving=False) as host:
            assert orch_id not in host.instance("refactory").runners
            seen = (await host.call("refactory.get_orchestration", id=orch_id)).data
            assert seen["status"] == "running" and seen["resumes"] == 0
        # The serving host resumes it as it starts: no reconcile call.
        async with host_running(home, PLUGINS, config=config(server)) as host:
            assert orch_id in host.instance("refactory").runners
            orch = await finished(host, orch_id)
            tasks = {t["title"]: t for t in (await host.call("refactory.list_tasks", plan_id=plan["id"])).data["tasks"]}
    assert orch["status"] == "done" and orch["resumes"] == 1, orch["report"]
    assert orch["report"]["tests_green"] and len(orch["report"]["merged"]) == 3
    assert tasks["Implement mul"]["state"] == "merged"
    assert git(repo, "rev-parse", "main") == plan["base_commit"]
    nothing_locked(repo)
