"""Shared fixtures: a workspace, a sentinel folder outside it, and the tools."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from refactorbot.tools import ToolContext


def _snapshot(root: Path, skip: Path) -> dict[str, object]:
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
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    folder = tmp_path / "sentinel"
    folder.mkdir()
    (folder / "secret.txt").write_text("do not touch\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.txt").write_text("deep\n")
    return folder


@pytest.fixture
def outside(tmp_path: Path, workspace: Path):
    """Return a function listing everything outside the workspace (content included), to compare."""
    return lambda: _snapshot(tmp_path, workspace)


@pytest.fixture
def ctx(workspace: Path) -> ToolContext:
    return ToolContext(workspace=workspace, session_id="s1", user_id="u1")
