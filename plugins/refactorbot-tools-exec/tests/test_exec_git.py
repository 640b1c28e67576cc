"""git under ``exec_run``: its configuration isolated, its repository confined to the workspace.

The attacker here got a ``.git/config`` into the workspace some other way than ``files_write``
(which refuses it now): a cloned repository, an extracted archive. It names commands for every
hook git has, and a work tree outside. With interpreters off the allow-list, nothing of it may
run, and nothing outside the workspace may be listed, read or written.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from refactorbot.errors import ToolError
from refactorbot.testing.tool_fixtures import snapshot
from refactorbot.tools import ToolContext, ToolResult
from refactorbot_tools_exec import ExecRun

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}
NO_INTERPRETERS = ["git", "ls", "cat", "echo"]


@pytest.fixture
def identity(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    for name, value in IDENTITY.items():
        monkeypatch.setenv(name, value)
    return list(IDENTITY)


def make_tool(mode: str, identity: list[str], programs: list[str] | None = None) -> ExecRun:
    return ExecRun({"allowed_programs": programs or NO_INTERPRETERS, "env_passthrough": identity, "sandbox": mode})


async def git(tool: ExecRun, ctx: ToolContext, *args: str, cwd: str = ".") -> ToolResult:
    return await tool.run(tool.Params(command=["git", *args], cwd=cwd), ctx)


def plain_git(*args: str, cwd: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    env.update(IDENTITY)
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.mark.asyncio
async def test_git_diff_works_in_a_real_repository(
    workspace: Path, ctx: ToolContext, identity: list[str], sandbox_mode: str
) -> None:
    tool = make_tool(sandbox_mode, identity)
    assert (await git(tool, ctx, "init", "-q")).ok
    (workspace / "a.txt").write_text("one\n")
    (workspace / "b.txt").write_text("left\n")
    assert (await git(tool, ctx, "add", "a.txt")).ok
    assert (await git(tool, ctx, "commit", "-q", "-m", "first")).ok
    (workspace / "a.txt").write_text("one\ntwo\n")
    diff = await git(tool, ctx, "diff")
    assert diff.ok, diff.error
    assert "+two" in diff.data["stdout"] and diff.data["argv"][:3] == ["git", "diff", "--no-ext-diff"]
    for args in (["diff", "--stat"], ["diff", "HEAD", "--", "a.txt"], ["diff", "--cached"], ["log", "-p"]):
        result = await git(tool, ctx, *args)
        assert result.ok, (args, result.error)
    (workspace / "c.txt").write_text("right\n")
    no_index = await git(tool, ctx, "diff", "--no-index", "b.txt", "c.txt")
    assert no_index.data["exit_code"] == 1 and "+right" in no_index.data["stdout"]


def plant(workspace: Path, outside: Path) -> None:
    """Write what an attacker would: every command-running setting, hooks, a work tree outside."""
    ran = workspace / "ran"  # every planted command would create a file in here
    ran.mkdir()
    hooks = outside / "hooks"
    hooks.mkdir()
    for name in ("pre-commit", "post-commit", "post-checkout", "reference-transaction", "post-index-change", "fsmon"):
        for folder in (hooks, workspace / ".git" / "hooks"):
            folder.mkdir(exist_ok=True)
            script = folder / name
            script.write_text(f"#!/bin/sh\ntouch {ran}/hook-{name}\n")
            script.chmod(0o755)
    (outside / "included.cfg").write_text(f'[filter "inc"]\n\tclean = touch {ran}/included-clean\n')
    with open(workspace / ".git" / "config", "a") as config:
        config.write(
            f"[core]\n\tworktree = {outside}\n\thooksPath = {hooks}\n\tfsmonitor = {hooks}/fsmon\n"
            f"\tpager = touch {ran}/pager\n\teditor = touch {ran}/editor\n\tsshCommand = touch {ran}/ssh\n"
            f"\tattributesFile = {outside}/attributes\n"
            f'[filter "x"]\n\tclean = touch {ran}/clean\n\tsmudge = touch {ran}/smudge\n\trequired = true\n'
            f'[filter "Mixed.Case"]\n\tprocess = touch {ran}/process\n'
            f"[diff]\n\texternal = touch {ran}/external\n"
            f'[diff "t"]\n\ttextconv = touch {ran}/textconv\n\tcommand = touch {ran}/diffcommand\n'
            f'[merge "m"]\n\tdriver = touch {ran}/merge\n'
            f"[pager]\n\tlog = touch {ran}/pager-log\n\tdiff = touch {ran}/pager-diff\n"
            f"[interactive]\n\tdiffFilter = touch {ran}/difffilter\n"
            f"[commit]\n\ttemplate = {outside}/secret.txt\n\tgpgSign = true\n"
            f"[gpg]\n\tprogram = touch {ran}/gpg\n"
            f"[credential]\n\thelper = !touch {ran}/credential\n"
            f"[include]\n\tpath = {outside}/included.cfg\n"
            "[gc]\n\tauto = 1\n\tautoDetach = true\n"
        )
    (outside / "attributes").write_text("* filter=x\n")
    (workspace / ".gitattributes").write_text("* filter=x diff=t merge=m\n*.p filter=Mixed.Case\n*.i filter=inc\n")


@pytest.mark.asyncio
async def test_repository_config_runs_nothing_and_reaches_nothing_outside(
    tmp_path: Path, workspace: Path, ctx: ToolContext, identity: list[str], sandbox_mode: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET\n")
    (outside / "tracked.txt").write_text("outside file\n")
    plain_git("init", "-q", cwd=workspace)
    (workspace / "a.txt").write_text("one\n")
    (workspace / "b.p").write_text("bee\n")
    (workspace / "c.i").write_text("sea\n")
    plain_git("add", ".", cwd=workspace)
    plain_git("commit", "-q", "-m", "base", cwd=workspace)
    plain_git("branch", "side", cwd=workspace)
    plant(workspace, outside)
    before = snapshot(tmp_path, workspace)
    tool = make_tool(sandbox_mode, identity)

    top = await git(tool, ctx, "rev-parse", "--show-toplevel")
    assert top.data["stdout"].strip() == str(workspace.resolve())
    listed = await git(tool, ctx, "ls-files")
    assert "tracked.txt" not in listed.output and "a.txt" in listed.data["stdout"]
    status = await git(tool, ctx, "status", "--short")
    assert "tracked.txt" not in status.output and "secret" not in status.output
    (workspace / "a.txt").write_text("one\ntwo\n")
    outputs = []
    for args in (
        ["add", "a.txt", "b.p", "c.i", ".gitattributes"],
        ["diff", "HEAD"],
        ["diff", "--cached"],
        ["log", "-p", "-2"],
        ["show", "HEAD"],
        ["blame", "a.txt"],
        ["grep", "-n", "one"],
        ["cat-file", "--filters", "HEAD:a.txt"],
        ["commit", "-q", "-m", "second"],
        ["commit", "-q", "--allow-empty"],
        ["commit", "-q", "-S", "--allow-empty", "-m", "signed"],
        ["log", "--show-signature", "-1"],
        ["log", "-1", "--format=%G? %GS"],
        ["checkout", "-q", "side"],
        ["checkout", "-q", "-"],
        ["merge", "side"],
        ["stash", "list"],
        ["restore", "a.txt"],
        ["rm", "-q", "--cached", "b.p"],
        ["status"],
        ["init", "-q"],
    ):
        result = await git(tool, ctx, *args)
        outputs.append(result.output)
    (workspace / "b.p").unlink()
    restored = await git(tool, ctx, "checkout", "HEAD", "--", "b.p")  # smudge / process filter
    assert restored.ok, restored.output
    assert (workspace / "b.p").read_text() == "bee\n"
    assert sorted(p.name for p in (workspace / "ran").iterdir()) == []
    assert not any("TOP SECRET" in text for text in outputs)
    assert snapshot(tmp_path, workspace) == before


@pytest.mark.asyncio
async def test_no_repository_above_the_workspace_is_used(
    tmp_path: Path, workspace: Path, ctx: ToolContext, identity: list[str], sandbox_mode: str
) -> None:
    plain_git("init", "-q", cwd=tmp_path)  # the workspace sits inside someone else's repository
    (tmp_path / "private.txt").write_text("outer\n")
    plain_git("add", "private.txt", cwd=tmp_path)
    plain_git("commit", "-q", "-m", "outer", cwd=tmp_path)
    tool = make_tool(sandbox_mode, identity)
    for args in (["ls-files"], ["log"], ["status"], ["show", "HEAD:private.txt"]):
        result = await git(tool, ctx, *args)
        assert not result.ok and "not a git repository" in result.error
        assert "outer" not in result.data["stdout"]


@pytest.mark.asyncio
async def test_git_folders_pointing_outside_are_refused(
    tmp_path: Path, workspace: Path, ctx: ToolContext, identity: list[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plain_git("init", "-q", cwd=elsewhere)
    tool = make_tool("off", identity)
    (workspace / "sub").mkdir()
    (workspace / "sub" / ".git").write_text(f"gitdir: {elsewhere / '.git'}\n")
    with pytest.raises(ToolError, match="points outside the workspace"):
        await git(tool, ctx, "status", cwd="sub")
    (workspace / "sub" / ".git").unlink()
    (workspace / "sub" / ".git").symlink_to(elsewhere / ".git")
    with pytest.raises(ToolError, match="points outside the workspace"):
        await git(tool, ctx, "log", cwd="sub")
    (workspace / "sub" / ".git").unlink()
    plain_git("init", "-q", cwd=workspace / "sub")
    alternates = workspace / "sub" / ".git" / "objects" / "info" / "alternates"
    alternates.parent.mkdir(parents=True, exist_ok=True)
    alternates.write_text(f"{elsewhere / '.git' / 'objects'}\n")
    with pytest.raises(ToolError, match="alternates' points outside"):
        await git(tool, ctx, "log", cwd="sub")
    alternates.unlink()
    (workspace / "sub" / ".git" / "commondir").write_text(str(elsewhere / ".git"))
    with pytest.raises(ToolError, match="commondir' points outside"):
        await git(tool, ctx, "log", cwd="sub")
