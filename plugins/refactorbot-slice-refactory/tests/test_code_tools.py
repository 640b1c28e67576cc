"""Coders with the code tools installed: ``code_search``, ``apply_patch`` and ``edit_file`` work in each
coder's per-run worktree, and the code-search index is keyed by that worktree's path."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from refactorbot.testing import ModelServer, Reply, host_running
from refactorbot_slice_refactory import script
from refactory_fixtures import PLUGINS, config, finished, git, nothing_locked

PY = sys.executable
PLAN = {
    "design": "# Shout and add\n\nTwo independent tasks.",
    "tasks": [
        {
            "key": "shout",
            "title": "Implement shout",
            "detail": "text.shout returns the text in capitals followed by '!'.",
            "scope": ["text.py"],
            "acceptance": [PY, "-m", "unittest", "tests.test_text"],
        },
        {
            "key": "add",
            "title": "Implement add",
            "detail": "calc.add returns the sum and 'add' is listed in calc.OPERATIONS.",
            "scope": ["calc.py"],
            "acceptance": [PY, "-m", "unittest", "tests.test_add"],
        },
    ],
}
SHOUT_PATCH = "".join(
    [
        "--- a/text.py\n",
        "+++ b/text.py\n",
        "@@ -2,4 +2,4 @@\n",
        " \n",
        " \n",
        " def shout(text):\n",
        "-    raise NotImplementedError\n",
        '+    return text.upper() + "!"\n',
    ]
)
ADD_EDITS = [
    {
        "op": "replace",
        "search": "def add(a, b):\n    raise NotImplementedError",
        "replace": "def add(a, b):\n    return a + b",
    },
    {"op": "replace", "search": "OPERATIONS = []", "replace": 'OPERATIONS = ["add"]'},
]


def responder(body: dict[str, Any]) -> Any:
    messages = body.get("messages") or []
    first = next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")
    system = str(messages[0].get("content") or "") if messages and messages[0].get("role") == "system" else ""
    if "You are the planner" in first:
        return Reply.text(json.dumps(PLAN))
    if "You review one task's diff" in system:
        return Reply.text("Looks right.")
    title = re.search(r"working on task \d+ of plan \d+: (.+)", first)
    done = sum(1 for m in messages if m.get("role") == "tool")
    if title and title.group(1) == "Implement shout":
        steps = [("code_search", {"query": "shout text"}), ("apply_patch", {"patch": SHOUT_PATCH})]
    elif title and title.group(1) == "Implement add":
        steps = [("code_search", {"query": "add OPERATIONS"}), ("edit_file", {"path": "calc.py", "edits": ADD_EDITS})]
    else:
        return Reply.text("unexpected")
    if done < len(steps):
        return Reply.tool_call(*steps[done])
    return Reply.text(f"{title.group(1)}: done with the code tools.")


@pytest.mark.asyncio
async def test_coders_search_and_patch_in_their_own_worktrees(tmp_path: Path) -> None:
    repo = script.build_repo(tmp_path / "repo")
    home = tmp_path / "home"
    with ModelServer(responder=responder) as server:
        async with host_running(home, [*PLUGINS, "refactorbot_tools_code.plugin"], config=config(server)) as host:
            request = await host.call(
                "refactory.create_request",
                title="Two",
                repo=str(repo),
                test_command=[PY, "-m", "unittest", "tests.test_text", "tests.test_add"],
            )
            plan = (await host.call("refactory.create_plan", request_id=request.data["id"])).data
            started = await host.call("refactory.orchestrate", plan_id=plan["id"], agents=2)
            assert started.success, started.error_message
            orch = await finished(host, started.data["id"])
            tasks = {t["title"]: t for t in (await host.call("refactory.list_tasks", plan_id=plan["id"])).data["tasks"]}
        tool_results = [
            (m.get("content") or "")
            for body in server.requests
            for m in body.get("messages") or []
            if m.get("role") == "tool"
        ]
    assert orch["status"] == "done", orch["report"]
    assert all(t["state"] == "merged" and t["attempts"] == 1 for t in tasks.values()), tasks
    integration = orch["report"]["integration_branch"]
    assert git(repo, "show", f"{integration}:text.py").endswith('return text.upper() + "!"')
    assert 'OPERATIONS = ["add"]' in git(repo, "show", f"{integration}:calc.py")
    # code_search found each task's function in its own worktree ...
    searches = [r for r in tool_results if "def shout" in r or "def add" in r]
    assert any("text.py" in r and "def shout" in r for r in searches), tool_results
    assert any("calc.py" in r and "def add" in r for r in searches), tool_results
    # ... with one index per worktree path, outside the worktrees, none for the configured workspace.
    indexes = {p.name for p in (home / "cache" / "code-index").glob("*.sqlite3")}
    for task in tasks.values():
        root = os.path.realpath(task["worktree"])
        assert hashlib.sha256(os.fsencode(root)).hexdigest()[:32] + ".sqlite3" in indexes
    assert len(indexes) == 2
    assert not any("error" in r.lower() and "apply_patch" in r for r in tool_results)
    nothing_locked(repo)
