"""Fixtures for testing tools confined to a workspace.

Import them into a ``conftest.py``::

    from refactorbot.testing.tool_fixtures import ctx, outside, sentinel, workspace  # noqa: F401

``outside()`` lists everything beside the workspace (contents included): take one before and one
after an attack, and assert they are equal — nothing was written outside.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from refactorbot.tools import ToolContext


def snapshot(root: Path, skip: Path) -> dict[str, object]:
    """Return every entry under ``root`` (except ``skip``) with its content or link target."""
    found: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_file():
                found[rel] = path.read_bytes()
            else:
                found[rel] = "dir"
    return found


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """Return an empty workspace folder."""
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    """Return a folder beside the workspace, with files an escape would reach."""
    folder = tmp_path / "sentinel"
    folder.mkdir()
    (folder / "secret.txt").write_text("do not touch\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.txt").write_text("deep\n")
    return folder


@pytest.fixture
def outside(tmp_path: Path, workspace: Path) -> Callable[[], dict[str, object]]:
    """Return a function listing everything outside the workspace (content included), to compare."""
    return lambda: snapshot(tmp_path, workspace)


@pytest.fixture
def ctx(workspace: Path) -> ToolContext:
    """Return a tool context on the workspace."""
    return ToolContext(workspace=workspace, session_id="s1", user_id="u1")
