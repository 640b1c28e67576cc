"""Plugins, configuration and git helpers of the refactory tests."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from refactorbot.testing import loopback_config
from refactorbot_slice_refactory.gitops import git_environment

PLUGINS = [
    "refactorbot_slice_refactory.plugin",
    "refactorbot_slice_agent.plugin",
    "refactorbot_slice_tools.plugin",
    "refactorbot_tools_files.plugin",
    "refactorbot.testing.loopback",
]


def config(server: Any, **refactory: Any) -> dict[str, Any]:
    """Return the host's tables: quiet supervisor, the loopback model, long agent runs allowed."""
    return {
        "core": {"health_interval": 3600},
        **loopback_config(server),
        "slices": {
            "agent": {"resources": {"timeout": 300}},
            "refactory": {"resources": {"timeout": 300}, **refactory},
        },
    }


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` and return its stripped output (fails the test on error)."""
    done = subprocess.run(["git", *args], cwd=repo, env=git_environment(), capture_output=True, text=True, check=True)
    return done.stdout.strip()


async def finished(host: Any, orch_id: int) -> dict[str, Any]:
    """Wait for the orchestration's runner to end and return the orchestration."""
    runner = host.instance("refactory").runners[orch_id]
    await asyncio.wait_for(asyncio.shield(runner), 240)
    response = await host.call("refactory.get_orchestration", id=orch_id)
    assert response.success, response.error_message
    return dict(response.data)


def nothing_locked(repo: Path) -> None:
    """Assert the repository has only its main worktree and no lock file left behind."""
    listed = git(repo, "worktree", "list", "--porcelain")
    assert [line for line in listed.splitlines() if line.startswith("worktree ")] == [f"worktree {repo}"], listed
    assert "locked" not in listed
    assert not list((repo / ".git").rglob("*.lock")), list((repo / ".git").rglob("*.lock"))
    assert not (repo / ".git" / "worktrees").exists() or not any((repo / ".git" / "worktrees").iterdir())
