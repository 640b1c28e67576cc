"""``refactorbot refactory`` as real subprocesses: the offline demo, every command without a server
(the slices started in the command, the model a loopback server), and against a running server with
an external coder process."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from refactorbot.testing import ModelServer, host_running
from refactorbot.testing.gateway_contract import write_config
from refactorbot_slice_refactory import script
from refactory_fixtures import PLUGINS, config, finished, git, nothing_locked

LOOPBACK = "refactorbot.testing.loopback"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("RB_")}, **(extra or {})}


def refactory(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "refactorbot", "--home", str(home), "refactory", *args],
        capture_output=True,
        text=True,
        env=_env(env),
        timeout=300,
        check=False,
    )


async def refactory_async(home: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "refactorbot",
        "--home",
        str(home),
        "refactory",
        *args,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_demo_runs_the_whole_workflow_offline(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = refactory(tmp_path / "home", "demo", "--agents", "2", env={"TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "refactorbot refactory demo — real git, real slices, an offline scripted model"
    assert "request 1: Make the failing tests pass" in lines
    assert "  task 3: Implement shout  scope text.py" in lines
    assert "orchestration 1: 2 coder(s), merge queue into refactory/1/integration" in lines
    assert "Orchestration 1 of plan 1: done" in lines
    assert "  tests on the integration branch: green" in lines
    assert "  land: not asked (--land)" in lines
    [folder] = scratch.iterdir()
    repo = folder / "repo"
    assert f"  repository: {repo}" in lines
    merged = [line for line in lines if line.startswith("  merged  task")]
    assert len(merged) == 3
    # the integration branch passes the repository's own tests; main is untouched
    git(repo, "checkout", "-q", "refactory/1/integration")
    tests = subprocess.run(script.test_command(), cwd=repo, capture_output=True, text=True, check=False)
    assert tests.returncode == 0, tests.stderr
    assert len(git(repo, "rev-list", "main").splitlines()) == 1
    nothing_locked(repo)


@pytest.fixture
def loopback_site(tmp_path: Path) -> dict[str, str]:
    """The kit's loopback gateway installed as an entry-point distribution (metadata on PYTHONPATH)."""
    site = tmp_path / "site"
    info = site / "refactorbot_loopback_gateway-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: refactorbot-loopback-gateway\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[refactorbot]\nloopback = {LOOPBACK}\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def test_commands_without_a_server_run_in_the_command(tmp_path: Path, loopback_site: dict[str, str]) -> None:
    repo = script.build_repo(tmp_path / "repo")
    home = tmp_path / "home"
    with ModelServer(responder=script.responder) as server:
        write_config(home, config(server))

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return refactory(home, *args, env=loopback_site)

        not_git = run("request", "create", "--title", "x", "--repo", str(tmp_path))
        assert not_git.returncode == 1 and "is not a git repository" in not_git.stderr

        created = run(
            "request",
            "create",
            "--title",
            "Make the tests pass",
            "--description",
            "add, mul and shout",
            "--repo",
            str(repo),
            "--test-command",
            shlex.join(script.test_command()),
        )
        assert created.returncode == 0, created.stderr
        assert created.stdout == f"Request 1: Make the tests pass ({repo}, main)\n"
        listed = run("request", "list")
        assert listed.stdout.splitlines()[1].split() == ["1", "Make", "the", "tests", "pass", str(repo), "main"]

        planned = run("plan", "create", "1")
        assert planned.returncode == 0, planned.stderr
        head = git(repo, "rev-parse", "main")
        out = planned.stdout.splitlines()
        assert out[0] == f"Plan 1 of request 1 (model planner), base {head[:12]}"
        assert out[1] == "  warning: tasks add and mul may run at once and share scope: calc.py"
        assert out[2].split() == ["TASK", "STATE", "AGENT", "ATTEMPTS", "DEPENDS", "TITLE"]
        assert [row.split()[1] for row in out[3:]] == ["planned", "planned", "planned"]

        as_json = json.loads(run("plan", "status", "1", "--json").stdout)
        assert [t["title"] for t in as_json["tasks"]] == ["Implement add", "Implement mul", "Implement shout"]

        orchestrated = run("orchestrate", "1", "--agents", "1")
        assert orchestrated.returncode == 0, orchestrated.stderr
        report = orchestrated.stdout.splitlines()
        assert report[0] == "Orchestration 1 running in this process (Ctrl-C interrupts; reconcile resumes)..."
        assert "Orchestration 1 of plan 1: done" in report
        assert "  tests on the integration branch: green" in report
        assert [line.split(":")[0] for line in report if line.startswith("  merged")] == [
            "  merged  task 1",
            "  merged  task 2",
            "  merged  task 3",
        ]

        status = run("plan", "status", "1")
        assert [row.split()[1] for row in status.stdout.splitlines()[-3:]] == ["merged", "merged", "merged"]
        merged = run("tasks", "list", "--plan-id", "1", "--state", "merged", "--agent", "coder1")
        assert [row.split()[0] for row in merged.stdout.splitlines()[1:]] == ["1", "2", "3"]
        task = json.loads(run("task", "inspect", "3").stdout)
        assert (task["title"], task["state"], task["acceptance_ok"]) == ("Implement shout", "merged", True)
        assert task["diff"].startswith("diff --git")

        again = run("reconcile", "1")  # nothing was interrupted: the finished report, exit 0
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines()[0] == "Orchestration 1 of plan 1: done"

        no_orchestration = run("reconcile", "5")
        assert no_orchestration.returncode == 1
        assert no_orchestration.stderr.strip() == "Error: plan 5 has no orchestration; run orchestrate first"

        coder = run("coder", "--name", "coder1", "--once")
        assert coder.returncode == 1
        assert coder.stderr.strip() == "Error: no running server for this home: start `refactorbot serve` first"
    assert git(repo, "rev-parse", "main") == head
    nothing_locked(repo)


@pytest.mark.asyncio
async def test_against_a_server_with_an_external_coder_process(tmp_path: Path) -> None:
    repo = script.build_repo(tmp_path / "repo")
    home = tmp_path / "home"
    plugins = [*PLUGINS, "refactorbot_api.plugin"]
    with ModelServer(responder=script.responder) as server:
        tables: dict[str, Any] = {**config(server), "plugins": {"api": {"port": 0}}}
        async with host_running(home, plugins, config=tables) as host:
            code, out, err = await refactory_async(
                home, "request", "create", "--title", "Make the tests pass", "--repo", str(repo),
                "--test-command", shlex.join(script.test_command()),
            )  # fmt: skip
            assert code == 0 and out.startswith("Request 1: Make the tests pass"), err
            code, out, err = await refactory_async(home, "plan", "create", "1", "--planner", "model")
            assert code == 0 and out.startswith("Plan 1 of request 1 (model planner)"), err

            code, out, err = await refactory_async(home, "orchestrate", "1", "--agents", "1", "--external", "--no-wait")
            assert code == 0, err
            assert out == "Orchestration 1 started; follow it with `refactorbot refactory plan status 1`\n"
            code, out, err = await refactory_async(home, "orchestrate", "1")
            assert code == 1 and err == (
                "Error: plan 1 already has orchestration 1 (running); create a new plan to run it again\n"
            ), err

            coder = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "refactorbot", "--home", str(home), "refactory", "coder",
                "--name", "coder1", "--interval", "0.2",
                env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            try:
                code, followed, err = await refactory_async(home, "reconcile", "1", "--interval", "0.2")
                orch = await finished(host, 1)
            finally:
                coder.send_signal(signal.SIGINT)  # Ctrl-C: the coder stops between polls
                coder_out = (await asyncio.wait_for(coder.communicate(), 60))[0].decode()
            assert orch["status"] == "done", (orch["report"], coder_out)
            assert code == 0, err
            assert followed.splitlines()[:2] == [
                "Orchestration 1 running on the server; following it...",
                "Orchestration 1 of plan 1: done",
            ]
            assert "  tests on the integration branch: green" in followed.splitlines()
            worked = [line.split(" in ")[0] for line in coder_out.splitlines() if line.startswith("coder1: task ")]
            assert set(worked) == {
                "coder1: task 1 — Implement add",
                "coder1: task 2 — Implement mul",
                "coder1: task 3 — Implement shout",
            }, coder_out
            # every task it worked on was reported (a task re-queued after a merge conflict is worked on again)
            assert coder_out.count("coder1: reported task") == len(worked), coder_out

            code, out, err = await refactory_async(home, "coder", "--name", "coder2", "--once")
            assert (code, out) == (0, "coder2: no task to work on\n"), err
    assert git(repo, "rev-parse", "main") == git(repo, "rev-list", "--max-parents=0", "main")
    nothing_locked(repo)
