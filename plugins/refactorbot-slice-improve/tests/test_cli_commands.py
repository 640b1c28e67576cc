"""``refactorbot improve`` as a real subprocess: without a server (the slices started in the command)
and against a running server, for the commands the dashboard test does not go through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IMPROVE, plan
from refactorbot.testing import ModelServer, loopback_config, plugin_of
from test_cli_pages import Client
from test_policies import Writer, prompt_action


def improve(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    return subprocess.run(
        [sys.executable, "-m", "refactorbot", "--home", str(home), "improve", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
        check=False,
    )


def test_commands_without_a_server_start_the_slices_themselves(tmp_path: Path, flaky_site: Path) -> None:
    home = tmp_path / "home"
    path = os.pathsep.join(p for p in (str(flaky_site), os.environ.get("PYTHONPATH", "")) if p)
    env = {"RB_LOAD_PLUGINS": "refactorbot-slice-improve,rb-flaky", "PYTHONPATH": path}

    ran = improve(home, "run", "flaky", "--feedback", "is it healthy?", env=env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "Cycle 1 for flaky: planned. all checks passed; brain unavailable (no LLM gateway is installed"
        " (pip install refactorbot-gateway-litellm)): rule-based",
        "No changes.",
    ]

    as_json = improve(home, "run", "flaky", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    cycle = json.loads(as_json.stdout)
    assert (cycle["id"], cycle["slice_id"], cycle["trigger"], cycle["changes"]) == (2, "flaky", "cli", [])

    cycles = improve(home, "cycles", "--slice", "flaky", "--limit", "5", env=env)
    assert cycles.returncode == 0, cycles.stderr
    header, *rows = cycles.stdout.splitlines()
    assert header.split() == ["ID", "SLICE", "TRIGGER", "STATUS", "CHANGES", "WHEN", "NOTES"]
    assert [row.split()[:5] for row in rows] == [
        ["2", "flaky", "cli", "planned", "0"],
        ["1", "flaky", "cli", "planned", "0"],
    ]
    assert improve(home, "cycles", "--slice", "other", env=env).stdout == "No cycles.\n"

    listed = improve(home, "list", "--status", "all", "--json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []

    nothing = improve(home, "evaluate", "--final", env=env)
    assert nothing.returncode == 0, nothing.stderr
    assert nothing.stdout == "Nothing is being evaluated.\n"

    missing = improve(home, "approve", "7", env=env)
    assert missing.returncode == 1 and missing.stderr.strip() == "Error: no change 7"

    assert improve(home, "overrides", env=env).stdout == "No overrides.\n"
    (home / "overrides").mkdir(mode=0o700)
    (home / "overrides" / "flaky.json").write_text(json.dumps({"failure_rate": 0.25, "broken_start": False}))
    found = improve(home, "overrides", env=env)
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines() == [
        f"flaky ({home / 'overrides' / 'flaky.json'}):",
        "  broken_start = false",
        "  failure_rate = 0.25",
    ]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Client]]:
    from refactorbot_api.testing import running_server

    Writer.versions = ["Hello {name}, answer at length."]
    with ModelServer() as model:
        model.script(
            plan(prompt_action("Hello {name}, answer in short."), notes="replies are cut"),
            plan(prompt_action("Hello {name}, answer briefly."), notes="still cut"),
        )
        config = {"slices": {"improve": {"min_calls": 3, "eval_window": 3600}}, **loopback_config(model)}
        plugins = [IMPROVE, "refactorbot.testing.loopback", plugin_of(slices=[Writer], name="writer")]
        with running_server(tmp_path / "home", plugins, config=config) as server:
            client = Client(server.url, server.token)
            for _ in range(3):
                assert client.post("/slices/writer/operations/reply", {"name": "ann"})["success"] is False
            yield tmp_path / "home", client


def test_reject_approve_roll_back_and_show_against_the_server(served: tuple[Path, Client]) -> None:
    home, client = served
    first = improve(home, "run", "writer")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("Cycle 1 for writer: planned. replies are cut")

    rejected = improve(home, "reject", "1", "--reason", "too curt")
    assert rejected.returncode == 0, rejected.stderr
    assert rejected.stdout == "Change 1: rejected\n"
    again = improve(home, "reject", "1")
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "Error: change 1 is rejected: only pending, approved or ready_to_land changes are rejected"
    )

    second = improve(home, "run", "writer", "--json")
    assert second.returncode == 0, second.stderr
    [change] = json.loads(second.stdout)["changes"]
    assert (change["id"], change["kind"], change["status"]) == (2, "prompt", "pending")

    pending = improve(home, "list", "--slice", "writer", "--json")
    assert [c["id"] for c in json.loads(pending.stdout)] == [2]
    assert improve(home, "land", "2").stderr.strip() == "Error: change 2 is pending, not ready_to_land"

    approved = improve(home, "approve", "2", "--reason", "shorter")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout == "Change 2: evaluating\n"
    assert Writer.versions[-1] == "Hello {name}, answer briefly."
    waiting = improve(home, "evaluate", "2")
    assert waiting.stdout == "Waiting: change 2: 0 of 3 calls since the deploy\n"

    rolled = improve(home, "rollback", "2", "--reason", "tone is off")
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout == "Change 2: rolled_back (tone is off)\n"
    assert Writer.versions[-1] == "Hello {name}, answer at length."

    shown = improve(home, "show", "2")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Cycle 2 for writer (cli, ")
    assert "\nPlan: still cut\n" in shown.stdout and " [rolled_back]\n" in shown.stdout
    assert "  prompt reply → Hello {name}, answer briefly. (risk low)" in shown.stdout
    assert "  before: 3 calls, error rate 100.0%, p95" in shown.stdout
    assert "+Hello {name}, answer briefly." in shown.stdout
    assert "rollback change 2 by cli:" in shown.stdout and ": tone is off" in shown.stdout
    as_json = json.loads(improve(home, "show", "2", "--json").stdout)
    assert [c["status"] for c in as_json["changes"]] == ["rolled_back"]

    table = improve(home, "list", "--status", "all")
    assert [line.split()[0] for line in table.stdout.splitlines()] == ["ID", "2", "1"]
    assert "rolled_back" in table.stdout and "rejected" in table.stdout
