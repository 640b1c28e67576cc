"""Real git, run without a shell, with its configuration isolated.

Every git command gets ``refactorbot.git_environment``: no system or global configuration, not
the user's ``HOME``, and command-scope settings (which win over every configuration file) that
switch off hooks, signing, pagers, editors, credential helpers and transports — plus the few
settings the workflow relies on (``EXTRA``) and a fixed identity for the commits it makes. The
repository's own ``.git/config`` still applies (its branches and remotes), but none of the
settings listed in ``refactorbot.GIT_FIXED`` can run a program.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from refactorbot import GIT_FIXED, RefactorbotError
from refactorbot import git_environment as isolated_environment

#: Identity of every commit the workflow makes.
IDENTITY = {
    "GIT_AUTHOR_NAME": "refactorbot refactory",
    "GIT_AUTHOR_EMAIL": "refactory@refactorbot.invalid",
    "GIT_COMMITTER_NAME": "refactorbot refactory",
    "GIT_COMMITTER_EMAIL": "refactory@refactorbot.invalid",
}

#: Settings of the workflow on top of ``GIT_FIXED``: stable output, no external diff, renames followed.
EXTRA: tuple[tuple[str, str], ...] = (
    ("init.defaultBranch", "main"),
    ("merge.renames", "true"),
    ("diff.external", ""),
    ("advice.detachedHead", "false"),
    ("core.quotePath", "false"),
)

#: Characters of a command's output kept.
OUTPUT_CHARS = 20_000


class GitError(RefactorbotError):
    """A git command failed; the message is git's first error line."""


@dataclasses.dataclass
class Completed:
    """A finished command: exit status and output (stdout and stderr merged, cut)."""

    status: int
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """Return True when the command exited 0."""
        return self.status == 0 and not self.timed_out


def git_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment every git command of the workflow runs with."""
    env = isolated_environment(base, home=tempfile.gettempdir(), settings=(*GIT_FIXED, *EXTRA), identity=IDENTITY)
    env["GIT_OPTIONAL_LOCKS"] = "0"
    return env


def _cut(text: str, limit: int = OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"


async def run_command(
    argv: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str],
    timeout: float,
    limit: int = OUTPUT_CHARS,
) -> Completed:
    """Run ``argv`` in ``cwd`` without a shell; on timeout kill its whole process group."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return Completed(127, f"cannot start {argv[0]}: {exc.strerror or exc}")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        _kill_group(proc.pid)
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        return Completed(-1, f"{argv[0]} timed out after {timeout:g}s", timed_out=True)
    return Completed(proc.returncode or 0, _cut(out.decode("utf-8", "replace"), limit))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Git:
    """git commands on one repository (``cwd`` is the main work tree or one of its worktrees)."""

    def __init__(self, timeout: float = 120.0) -> None:
        self.env = git_environment()
        self.timeout = timeout

    async def run(self, cwd: Path, *args: str, check: bool = True) -> Completed:
        """Run ``git <args>`` in ``cwd``; raise ``GitError`` on failure when ``check``."""
        done = await run_command(["git", *args], cwd, env=self.env, timeout=self.timeout)
        if check and not done.ok:
            lines = [line for line in done.output.splitlines() if line.strip()]
            why = next((line for line in lines if line.startswith(("fatal:", "error:"))), lines[0] if lines else "")
            raise GitError(f"git {args[0]} failed in {cwd}: {why[:300] or f'status {done.status}'}")
        return done

    async def out(self, cwd: Path, *args: str) -> str:
        """Return the stripped output of ``git <args>``."""
        return (await self.run(cwd, *args)).output.strip()

    async def toplevel(self, path: Path) -> Path:
        """Return the main work tree of the repository at ``path`` (``GitError`` if it is not one)."""
        common = await self.out(path, "rev-parse", "--path-format=absolute", "--git-common-dir")
        top = await self.out(path, "rev-parse", "--show-toplevel")
        if Path(common).name == ".git":
            return Path(common).parent
        return Path(top)

    async def resolve(self, repo: Path, rev: str) -> str:
        """Return the commit id of ``rev``."""
        return await self.out(repo, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}")

    async def branch_exists(self, repo: Path, branch: str) -> bool:
        """Return True when ``refs/heads/<branch>`` exists."""
        done = await self.run(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
        return done.ok

    async def add_worktree(self, repo: Path, path: Path, branch: str, start: str) -> None:
        """Create (or reset) ``branch`` at ``start`` and check it out in a new worktree at ``path``."""
        await self.remove_worktree(repo, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.run(repo, "worktree", "add", "--force", "-B", branch, str(path), start)

    async def remove_worktree(self, repo: Path, path: Path) -> None:
        """Remove the worktree at ``path`` if there is one, then prune stale entries."""
        listed = await self.out(repo, "worktree", "list", "--porcelain")
        real = os.path.realpath(path)
        for line in listed.splitlines():
            if line.startswith("worktree ") and os.path.realpath(line[len("worktree ") :]) == real:
                await self.run(repo, "worktree", "unlock", str(path), check=False)
                await self.run(repo, "worktree", "remove", "--force", "--force", str(path), check=False)
        if path.exists():
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        await self.run(repo, "worktree", "prune")

    async def commit_all(self, tree: Path, message: str) -> str | None:
        """Stage every change in ``tree`` and commit it; return the commit, or None when nothing changed."""
        await self.run(tree, "add", "-A")
        staged = await self.run(tree, "diff", "--cached", "--quiet", check=False)
        if staged.ok:
            return None
        await self.run(tree, "commit", "--no-verify", "-q", "-m", message)
        return await self.out(tree, "rev-parse", "HEAD")

    async def diff_stat(self, tree: Path, base: str, head: str) -> tuple[str, int, list[str]]:
        """Return the diff stat, the lines changed and the files changed between ``base`` and ``head``."""
        stat = await self.out(tree, "diff", "--no-ext-diff", "--stat", base, head)
        numstat = await self.out(tree, "diff", "--no-ext-diff", "--numstat", base, head)
        lines, files = 0, []
        for row in numstat.splitlines():
            parts = row.split("\t", 2)
            if len(parts) == 3:
                lines += sum(int(n) for n in parts[:2] if n.isdigit())
                files.append(parts[2])
        return stat, lines, files

    async def diff(self, tree: Path, base: str, head: str) -> str:
        """Return the unified diff between ``base`` and ``head`` (cut)."""
        return (await self.run(tree, "diff", "--no-ext-diff", base, head)).output

    async def merge(self, tree: Path, branch: str, message: str) -> Completed:
        """Merge ``branch`` into the branch checked out in ``tree`` with a merge commit (never fast-forward)."""
        return await self.run(tree, "merge", "--no-ff", "--no-verify", "--no-edit", "-m", message, branch, check=False)

    async def conflicted(self, tree: Path) -> list[str]:
        """Return the files with unresolved conflicts in ``tree``."""
        return (await self.out(tree, "diff", "--name-only", "--diff-filter=U")).splitlines()

    async def undo_merge(self, tree: Path, head: str) -> None:
        """Abort a merge in progress and put ``tree`` back at ``head`` exactly."""
        await self.run(tree, "merge", "--abort", check=False)
        await self.run(tree, "reset", "--hard", "-q", head)
        await self.run(tree, "clean", "-fdq")
