"""Fixtures: the testing kit's workspace fixtures, a private home, and real git repositories."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from refactorbot.testing.tool_fixtures import ctx, outside, sentinel, workspace  # noqa: F401

#: git run by the tests themselves: no user or system configuration, a fixed identity.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}


def run_git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (no shell) and return its output; fail the test on an error."""
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give every test its own refactorbot home (where code indexes live)."""
    folder = tmp_path / "home"
    monkeypatch.setenv("RB_HOME", str(folder))
    return folder


@pytest.fixture
def repo(workspace: Path) -> Callable[..., str]:  # noqa: F811
    """Make the workspace a git repository with one commit; return a ``git(*args)`` runner."""
    run_git(workspace, "init", "-q", "-b", "main")
    (workspace / "README.md").write_text("# demo\n")
    run_git(workspace, "add", "README.md")
    run_git(workspace, "commit", "-q", "-m", "initial")
    return lambda *args: run_git(workspace, *args)


@pytest.fixture
def git() -> Callable[..., str]:
    """Return ``git(cwd, *args)``: run git in any folder (a worktree, say)."""
    return run_git
