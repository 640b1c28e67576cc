"""The path-escape corpus: every attempt is refused with one clear line, nothing outside changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from refactorbot.errors import PathOutsideWorkspace, ToolError, describe_validation_error
from refactorbot.testing.tool_fixtures import snapshot
from refactorbot.tools import ToolContext
from refactorbot.workspace import Workspace
from refactorbot_tools_files import FilesDelete, FilesList, FilesRead, FilesReplace, FilesWrite

ESCAPES = [
    # parent traversal
    "../x",
    "../../x",
    "..",
    "../",
    "./../x",
    "a/../../x",
    "a/b/../../../x",
    "a/./../../x",
    "../sentinel/secret.txt",
    "a/..",
    # absolute and network forms
    "/etc/passwd",
    "//etc/passwd",
    "/tmp/pwned.txt",
    "///etc//passwd",
    # Windows forms
    "..\\x",
    "\\..\\x",
    "a\\..\\..\\x",
    "C:\\x",
    "C:/Windows/x",
    "c:x",
    "\\\\server\\share\\x",
    # NUL, control and invisible characters
    "x\x00.txt",
    "\x00",
    "../x\x00.txt",
    "a\n/../../x",
    "a\u202e/x",
    "a\u200b/../x",
    # home and variable expansion
    "~/x",
    "~root/x",
    "~",
    "$HOME/x",
    "${HOME}/x",
    # percent-encoding
    "%2e%2e/x",
    "%2E%2E/x",
    "..%2fx",
    "%2e%2e%2f%2e%2e%2fx",
    # unicode look-alikes of '.' and '/'
    "\uff0e\uff0e/x",
    "\u2024\u2024/x",
    "\ufe52\ufe52/x",
    "a\uff0f..\uff0f..\uff0fx",
    # dot and space tricks
    "...",
    "....",
    ". ./x",
    ".. /x",
    " ../x",
    # overlong
    "x" * 256,
    "a/" * 600,
    "/".join(["d"] * 65),
    # symlinks set up in the workspace
    "out",
    "out/secret.txt",
    "out/new.txt",
    "etc/passwd",
    "rel-out/secret.txt",
    "parent/new.txt",
    "chain/secret.txt",
    "secret-link",
    "inner/deeper/secret.txt",
    "loop-a",
    "loop-a/x",
    "dangling",
    "devnull",
    "proc-root/etc/passwd",
]


def _setup(workspace: Path, sentinel: Path) -> None:
    (workspace / "out").symlink_to(sentinel)
    (workspace / "etc").symlink_to("/etc")
    (workspace / "rel-out").symlink_to("../sentinel")
    (workspace / "parent").symlink_to(sentinel / "sub")
    (workspace / "chain").symlink_to("out")
    (workspace / "secret-link").symlink_to(sentinel / "secret.txt")
    (workspace / "inner").mkdir()
    (workspace / "inner" / "deeper").symlink_to("../../sentinel")
    (workspace / "loop-a").symlink_to("loop-b")
    (workspace / "loop-b").symlink_to("loop-a")
    (workspace / "dangling").symlink_to(sentinel / "missing.txt")
    (workspace / "devnull").symlink_to("/dev/null")
    (workspace / "proc-root").symlink_to("/proc/self/root")


def test_corpus_is_large_and_distinct() -> None:
    assert len(ESCAPES) >= 40
    assert len(set(ESCAPES)) == len(ESCAPES)


def _calls(path: str) -> list[tuple[object, dict[str, object]]]:
    return [
        (FilesWrite(), {"path": path, "content": "PWNED"}),
        (FilesRead(), {"path": path}),
        (FilesReplace(), {"path": path, "search": "do not touch", "replace": "PWNED"}),
        (FilesDelete(), {"path": path, "directory": True}),
        (FilesList(), {"path": path, "recursive": True}),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ESCAPES, ids=[repr(p)[:40] for p in ESCAPES])
async def test_escape_refused(
    path: str, tmp_path: Path, workspace: Path, sentinel: Path, ctx: ToolContext, outside
) -> None:
    _setup(workspace, sentinel)
    before = outside()
    for tool, arguments in _calls(path):
        try:
            params = tool.Params.model_validate(arguments)
        except ValidationError as exc:  # refused before running (e.g. too long): also a clear refusal
            message = describe_validation_error(exc)
            assert "path" in message and "\n" not in message
            continue
        with pytest.raises(ToolError) as err:
            await tool.run(params, ctx)
        message = str(err.value)
        assert message and "\n" not in message, (tool.name, message)
        assert len(message) < 400
    assert outside() == before
    assert (sentinel / "secret.txt").read_text() == "do not touch\n"
    assert not list(tmp_path.glob("**/pwned*"))


class RacingWorkspace(Workspace):
    """A workspace whose file is swapped for a symlink right after each check, as an attacker would."""

    target: Path

    def resolve(self, user_path: str, **options: bool) -> Path:
        checked = super().resolve(user_path, **options)
        victim = self.root / "victim.txt"
        if victim.exists() and not victim.is_symlink():
            victim.unlink()
            victim.symlink_to(self.target)
        return checked


class RacingParentWorkspace(Workspace):
    """A workspace whose folder is swapped for a symlink right after each check."""

    target: Path

    def resolve(self, user_path: str, **options: bool) -> Path:
        checked = super().resolve(user_path, **options)
        folder = self.root / "dir"
        if folder.is_dir() and not folder.is_symlink():
            for child in folder.iterdir():
                child.unlink()
            folder.rmdir()
            folder.symlink_to(self.target)
        return checked


@pytest.mark.asyncio
@pytest.mark.parametrize("tool_class", [FilesRead, FilesReplace, FilesWrite])
async def test_file_swapped_for_symlink_between_check_and_use(
    tool_class: type, workspace: Path, sentinel: Path, ctx: ToolContext, outside
) -> None:
    before = outside()
    tool = tool_class()
    racing = RacingWorkspace(workspace)
    racing.target = sentinel / "secret.txt"
    tool.workspace = lambda _ctx: racing  # the attacker swaps paths inside this workspace
    (workspace / "victim.txt").write_text("do not touch\n")
    arguments = {"path": "victim.txt", "search": "do not touch", "replace": "PWNED", "content": "PWNED"}
    params = tool.Params.model_validate({k: v for k, v in arguments.items() if k in tool.Params.model_fields})
    if tool_class is FilesWrite:
        # a write replaces the symlink itself (rename never follows it): nothing outside changes
        await tool.run(params, ctx)
        assert not (workspace / "victim.txt").is_symlink()
    else:
        with pytest.raises(PathOutsideWorkspace, match="symlink"):
            await tool.run(params, ctx)
    assert outside() == before


@pytest.mark.asyncio
async def test_parent_swapped_for_symlink_between_check_and_write(
    workspace: Path, sentinel: Path, ctx: ToolContext, outside
) -> None:
    before = outside()
    tool = FilesWrite()
    racing = RacingParentWorkspace(workspace)
    racing.target = sentinel
    tool.workspace = lambda _ctx: racing  # the attacker swaps paths inside this workspace
    (workspace / "dir").mkdir()
    (workspace / "dir" / "keep.txt").write_text("x")
    with pytest.raises(PathOutsideWorkspace, match="changed into a symlink"):
        await tool.run(tool.Params(path="dir/new.txt", content="PWNED"), ctx)
    assert outside() == before


@pytest.mark.asyncio
async def test_special_files_refused(workspace: Path, ctx: ToolContext) -> None:
    os.mkfifo(workspace / "fifo")
    for tool, arguments in _calls("fifo")[:3]:
        with pytest.raises(ToolError, match="devices, pipes"):
            await tool.run(tool.Params.model_validate(arguments), ctx)


@pytest.mark.asyncio
async def test_configured_workspace_wins_and_is_confined(tmp_path: Path, sentinel: Path) -> None:
    configured = tmp_path / "configured"
    tool = FilesWrite({"workspace": str(configured)})
    ctx = ToolContext(workspace=tmp_path / "ws-from-context")
    await tool.run(tool.Params(path="a.txt", content="x"), ctx)
    assert (configured / "a.txt").read_text() == "x"
    with pytest.raises(PathOutsideWorkspace):
        await tool.run(tool.Params(path="../sentinel/secret.txt", content="x"), ctx)


# -- version-control metadata -------------------------------------------------------------------


def _git_repo(workspace: Path) -> None:
    import subprocess

    env = {"PATH": "/usr/bin:/bin", "HOME": str(workspace), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(["git", "init", "-q"], cwd=workspace, env=env, check=True)
    subprocess.run(["git", "init", "-q", "--bare", "store"], cwd=workspace, env=env, check=True)
    (workspace / "sub").mkdir()
    (workspace / "sub" / ".git").write_text("gitdir: ../store\n")
    (workspace / "to-git").symlink_to(workspace / ".git")


VCS_ATTACKS: list[tuple[type, dict[str, object]]] = [
    (FilesWrite, {"path": ".git/config", "content": '[filter "x"]\n\tclean = touch ../pwned\n'}),
    (FilesWrite, {"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\ntouch ../pwned\n"}),
    (FilesWrite, {"path": ".git/info/attributes", "content": "* filter=x\n"}),
    (FilesWrite, {"path": ".GIT/config", "content": "x"}),
    (FilesWrite, {"path": "to-git/config", "content": "x"}),
    (FilesWrite, {"path": "store/config", "content": "x"}),
    (FilesWrite, {"path": "sub/.git", "content": "gitdir: /tmp\n"}),
    (FilesWrite, {"path": "new/.git", "content": "gitdir: ../store\n"}),
    (FilesWrite, {"path": ".hg/hgrc", "content": "[hooks]\nupdate = touch ../pwned\n"}),
    (FilesReplace, {"path": ".git/config", "search": "[core]", "replace": "[core]\n\tworktree = /"}),
    (FilesReplace, {"path": "store/config", "search": "[core]", "replace": "[core]\n\tfsmonitor = x"}),
    (FilesDelete, {"path": ".git/HEAD"}),
    (FilesDelete, {"path": ".git/config"}),
    (FilesDelete, {"path": "sub/.git"}),
    (FilesDelete, {"path": "store/HEAD"}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("tool_class", "arguments"), VCS_ATTACKS, ids=[f"{c.name}:{a['path']}" for c, a in VCS_ATTACKS]
)
async def test_vcs_metadata_cannot_be_written(
    tool_class: type, arguments: dict[str, object], workspace: Path, ctx: ToolContext
) -> None:
    _git_repo(workspace)
    before = snapshot(workspace, workspace / "nothing")
    tool = tool_class()
    with pytest.raises(PathOutsideWorkspace, match="metadata") as err:
        await tool.run(tool.Params.model_validate(arguments), ctx)
    assert "\n" not in str(err.value)
    assert snapshot(workspace, workspace / "nothing") == before


@pytest.mark.asyncio
async def test_vcs_metadata_can_be_read_and_listed(workspace: Path, ctx: ToolContext) -> None:
    _git_repo(workspace)
    read = await FilesRead().run(FilesRead.Params(path=".git/HEAD"), ctx)
    assert read.output.startswith("ref: refs/heads/")
    listed = await FilesList().run(FilesList.Params(path=".git"), ctx)
    assert "config" in listed.output
    # files named like metadata, and a symlink to .git (the link itself), can still be changed
    await FilesWrite().run(FilesWrite.Params(path=".gitignore", content="*.pyc\n"), ctx)
    await FilesWrite().run(FilesWrite.Params(path=".github/workflows/ci.yml", content="on: push\n"), ctx)
    deleted = await FilesDelete().run(FilesDelete.Params(path="to-git"), ctx)
    assert deleted.data["type"] == "symlink" and (workspace / ".git" / "HEAD").is_file()
