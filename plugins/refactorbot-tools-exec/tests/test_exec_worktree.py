"""git under ``exec_run`` in a linked worktree (``git worktree add``), as coders work.

The worktree's ``.git`` is a file naming ``<repository>/.git/worktrees/<name>``, outside the
workspace. git may use it when the repository registered this worktree (the registration names
this ``.git`` file back); the repository's configuration still runs nothing, and only git reaches
its git folder — with its configuration and hooks read-only in the sandbox. A ``.git`` file that
merely claims to be a worktree is refused as before, and the files tools still refuse to write
version-control metadata.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from refactorbot import PathOutsideWorkspace, ToolContext, ToolError, Workspace, git_environment
from refactorbot_tools_exec import ExecRun

IDENTITY = {
    "GIT_AUTHOR_NAME": "Coder",
    "GIT_COMMITTER_NAME": "Coder",
    "GIT_AUTHOR_EMAIL": "coder@example.invalid",
    "GIT_COMMITTER_EMAIL": "coder@example.invalid",
}


def plain_git(cwd: Path, *args: str) -> str:
    env = git_environment(home=cwd, identity=IDENTITY)
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def digest(folder: Path) -> dict[str, str]:
    """Return every file under ``folder`` with the hash of its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def linked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """A repository with a planted configuration and hooks, and a linked worktree on branch ``task``."""
    for name, value in IDENTITY.items():
        monkeypatch.setenv(name, value)
    repo, ran = tmp_path / "repo", tmp_path / "ran"
    repo.mkdir()
    ran.mkdir()
    plain_git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("VALUE = 1\n")
    (repo / ".gitattributes").write_text("*.py filter=x diff=t\n")
    plain_git(repo, "add", "-A")
    plain_git(repo, "commit", "-q", "-m", "base")
    worktree = tmp_path / "worktrees" / "task-1"
    plain_git(repo, "worktree", "add", "-q", "-b", "task", str(worktree), "main")
    (repo / ".git" / "hooks").mkdir(exist_ok=True)  # init.templateDir is empty: no sample hooks folder
    for hook in ("pre-commit", "post-commit", "post-checkout", "reference-transaction"):
        script = repo / ".git" / "hooks" / hook
        script.write_text(f"#!/bin/sh\ntouch {ran}/hook-{hook}\n")
        script.chmod(0o755)
    with open(repo / ".git" / "config", "a") as config:
        config.write(
            f'[filter "x"]\n\tclean = touch {ran}/clean\n\tsmudge = touch {ran}/smudge\n'
            f'[diff "t"]\n\ttextconv = touch {ran}/textconv\n[core]\n\tpager = touch {ran}/pager\n'
        )
    return repo, worktree, ran


def tool(mode: str, programs: list[str] | None = None) -> ExecRun:
    return ExecRun({"allowed_programs": programs or ["git", "cat"], "env_passthrough": list(IDENTITY), "sandbox": mode})


async def run(exec_run: ExecRun, worktree: Path, *command: str) -> tuple[bool, str]:
    result = await exec_run.run(exec_run.Params(command=list(command)), ToolContext(workspace=worktree))
    return result.ok, result.output


@pytest.mark.asyncio
async def test_git_works_in_a_linked_worktree_and_commits_to_its_branch(
    linked: tuple[Path, Path, Path], sandbox_mode: str
) -> None:
    repo, worktree, ran = linked
    config_before = (repo / ".git" / "config").read_bytes()
    hooks_before = digest(repo / ".git" / "hooks")
    exec_run = tool(sandbox_mode)
    ok, out = await run(exec_run, worktree, "git", "rev-parse", "--show-toplevel", "--abbrev-ref", "HEAD")
    assert ok and out.splitlines()[2:4] == [str(worktree.resolve()), "task"], out
    (worktree / "app.py").write_text("VALUE = 2\n")
    for command in (
        ["git", "status", "--short"],
        ["git", "diff"],
        ["git", "add", "app.py"],
        ["git", "commit", "-q", "-m", "task 1: VALUE is 2"],
        ["git", "log", "--oneline", "-2"],
        ["git", "show", "--stat", "HEAD"],
        ["git", "branch", "--list"],
    ):
        ok, out = await run(exec_run, worktree, *command)
        assert ok, (command, out)
    assert "* task" in out or "+ task" in out, out
    # The commit is on the worktree's branch in the repository; main and the main work tree are untouched.
    assert plain_git(repo, "log", "-1", "--format=%s", "task") == "task 1: VALUE is 2"
    assert plain_git(repo, "show", "task:app.py") == "VALUE = 2"
    assert plain_git(repo, "log", "-1", "--format=%s", "main") == "base"
    assert (repo / "app.py").read_text() == "VALUE = 1\n"
    assert sorted(p.name for p in ran.iterdir()) == []  # no hook, filter, textconv or pager ran
    assert (repo / ".git" / "config").read_bytes() == config_before
    assert digest(repo / ".git" / "hooks") == hooks_before


@pytest.mark.asyncio
async def test_in_the_sandbox_only_git_reaches_the_repository_and_not_its_configuration(
    linked: tuple[Path, Path, Path], bwrap: None
) -> None:
    repo, worktree, _ran = linked
    config_before = (repo / ".git" / "config").read_bytes()
    exec_run = tool("auto", ["git", "cat", "python3"])
    # A script in the worktree tries to plant a hook and a filter in the repository's git folder.
    (worktree / "plant.py").write_text(
        "import sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        open(path, 'a').write('x')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('REFUSED', path, type(exc).__name__)\n"
    )
    common = repo / ".git"
    with pytest.raises(PathOutsideWorkspace):
        await run(exec_run, worktree, "python3", "plant.py", str(common / "config"))
    # Written as the script's own data (no path argument), the targets still are not reachable.
    (worktree / "plant.py").write_text(
        "targets = " + repr([str(common / "config"), str(common / "hooks" / "post-merge")]) + "\n"
        "for path in targets:\n"
        "    try:\n"
        "        open(path, 'a').write('x')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('REFUSED', path, type(exc).__name__)\n"
    )
    ok, out = await run(exec_run, worktree, "python3", "plant.py")
    assert ok and "WROTE" not in out and out.count("REFUSED") == 2, out
    # git commits through the mounted repository, whose configuration it cannot change.
    ok, out = await run(exec_run, worktree, "git", "commit", "-q", "--allow-empty", "-m", "from the sandbox")
    assert ok, out
    assert plain_git(repo, "log", "-1", "--format=%s", "task") == "from the sandbox"
    _ok, out = await run(exec_run, worktree, "git", "branch", "--set-upstream-to=main")
    assert "could not write config file" in out, out  # git says so (and exits 0): the file is read-only here
    assert (repo / ".git" / "config").read_bytes() == config_before
    assert not (common / "hooks" / "post-merge").exists()


@pytest.mark.asyncio
async def test_a_git_file_claiming_a_worktree_it_is_not_is_refused(
    tmp_path: Path, linked: tuple[Path, Path, Path]
) -> None:
    repo, worktree, _ran = linked
    exec_run = tool("off")
    # A copy of a registered worktree's .git file in another folder: the registration names the
    # original, so the copy is not that worktree.
    impostor = tmp_path / "impostor"
    impostor.mkdir()
    (impostor / ".git").write_text((worktree / ".git").read_text())
    with pytest.raises(ToolError, match="points outside the workspace"):
        await run(exec_run, impostor, "git", "log")
    # A symlink to the registered .git file is refused too.
    (impostor / ".git").unlink()
    (impostor / ".git").symlink_to(worktree / ".git")
    with pytest.raises(ToolError, match="points outside the workspace"):
        await run(exec_run, impostor, "git", "status")
    # The registration's commondir must lead to the repository holding it.
    commondir = repo / ".git" / "worktrees" / "task-1" / "commondir"
    original = commondir.read_text()
    commondir.write_text(str(tmp_path / "elsewhere") + "\n")
    try:
        with pytest.raises(ToolError, match="points outside the workspace"):
            await run(exec_run, worktree, "git", "status")
    finally:
        commondir.write_text(original)
    assert (await run(exec_run, worktree, "git", "status"))[0]


def test_the_files_tools_still_refuse_to_write_version_control_metadata(linked: tuple[Path, Path, Path]) -> None:
    repo, worktree, _ran = linked
    ws = Workspace(worktree)
    with pytest.raises(PathOutsideWorkspace):
        ws.resolve(".git", write=True)
    gitdir = repo / ".git" / "worktrees" / "task-1"
    for path in (str(gitdir / "HEAD"), os.path.relpath(gitdir / "HEAD", worktree)):
        with pytest.raises(PathOutsideWorkspace):
            ws.resolve(path)
    assert ws.resolve("app.py", write=True) == (worktree / "app.py").resolve()
