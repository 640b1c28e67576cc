"""Code changes in the slice's source checkout: its tests on a branch, landing, and the revert.

Every command runs without a shell. git runs with the core's isolated environment (no system or
global configuration, no hooks, no pager or editor) and a fixed identity; the distribution's tests
run in a detached worktree of the branch, with the checkout's import paths pointed at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refactorbot import one_line

from refactorbot_slice_improve.apply import ChangeRefused

#: The author and committer of the commits the improve slice makes (the revert of a landed change).
IDENTITY = {
    "GIT_AUTHOR_NAME": "refactorbot improve",
    "GIT_AUTHOR_EMAIL": "improve@refactorbot.invalid",
    "GIT_COMMITTER_NAME": "refactorbot improve",
    "GIT_COMMITTER_EMAIL": "improve@refactorbot.invalid",
}
#: Characters of a command's output kept in the audit trail and the change.
OUTPUT_CHARS = 4000
#: Environment variables a test command gets from ours (no keys).
GIT_TIMEOUT = 120.0
#: Environment variables a test command gets from ours (no keys).
KEPT = ("PATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "HOME", "TMPDIR")


@dataclass
class Outcome:
    """What a command did."""

    ok: bool
    code: int | None
    output: str


def _cut(text: str) -> str:
    return text if len(text) <= OUTPUT_CHARS else "[...]\n" + text[-OUTPUT_CHARS:]


async def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Outcome:
    """Run ``argv`` in ``cwd`` (its own process group, killed after ``timeout`` seconds)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return Outcome(False, None, f"cannot run {argv[0]}: {exc}")
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        return Outcome(False, None, f"{' '.join(argv[:4])} did not finish within {timeout:g}s (killed)")
    return Outcome(proc.returncode == 0, proc.returncode, _cut(out.decode("utf-8", "replace")))


class Git:
    """git in one repository, isolated from the user's and the system's configuration."""

    def __init__(self, repo: Path, scratch: Path, timeout: float) -> None:
        from refactorbot import git_environment

        self.repo, self.timeout = repo, timeout
        self.env = git_environment(home=scratch, identity=IDENTITY)

    async def run(self, *args: str, check: bool = True) -> Outcome:
        done = await run(["git", *args], self.repo, self.env, self.timeout)
        if check and not done.ok:
            raise ChangeRefused(f"git {args[0]} in {self.repo} failed: {one_line(done.output)[:500]}")
        return done

    async def out(self, *args: str) -> str:
        return (await self.run(*args)).output.strip()

    async def checked_out(self) -> str:
        """Return the branch checked out in the checkout; ``ChangeRefused`` when detached."""
        done = await self.run("symbolic-ref", "-q", "--short", "HEAD", check=False)
        if not done.ok or not done.output.strip():
            raise ChangeRefused(f"{self.repo} has no branch checked out (detached HEAD): check one out first")
        return done.output.strip()

    async def clean(self) -> bool:
        return not await self.out("status", "--porcelain", "--untracked-files=no")


def import_paths(distribution: str, checkout: Path) -> list[Path]:
    """Return the folders an editable install of ``distribution`` puts on ``sys.path``, inside ``checkout``."""
    from importlib import metadata

    dist = metadata.distribution(distribution)
    found: list[Path] = []
    for file in dist.files or ():
        if not str(file).endswith(".pth"):
            continue
        try:
            text = Path(str(dist.locate_file(file))).read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith(("#", "import ", "import\t")):
                continue
            path = Path(line).resolve()
            if path == checkout or checkout in path.parents:
                found.append(path)
    return found


def test_environment(paths: list[Path], checkout: Path, tree: Path, scratch: Path) -> dict[str, str]:
    """Return the tests' environment: ours without keys, the checkout's import paths pointed at ``tree``."""
    env = {key: os.environ[key] for key in KEPT if key in os.environ}
    env.setdefault("PATH", os.defpath)
    env["HOME"] = str(scratch)
    mapped = [str(tree / path.relative_to(checkout)) for path in paths]
    if mapped:
        env["PYTHONPATH"] = os.pathsep.join(mapped)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def default_test_command(dist_folder: str) -> list[str]:
    """Return ``python -m pytest <dist>/tests`` with this Python (the folder relative to the checkout)."""
    tests = "tests" if dist_folder in ("", ".") else f"{dist_folder}/tests"
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests]


async def test_branch(
    git: Git,
    head: str,
    argv: list[str],
    paths: list[Path],
    worktrees: Path,
    name: str,
    timeout: float,
) -> Outcome:
    """Run ``argv`` in a detached worktree at ``head`` (removed after); return what it did."""
    worktrees.mkdir(parents=True, exist_ok=True)
    tree = worktrees / name
    if tree.exists():
        await git.run("worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(tree, ignore_errors=True)
    await git.run("worktree", "add", "--detach", "-q", str(tree), head)
    scratch = worktrees / f"{name}.home"
    scratch.mkdir(exist_ok=True)
    try:
        return await run(argv, tree, test_environment(paths, git.repo, tree, scratch), timeout)
    finally:
        await git.run("worktree", "remove", "--force", str(tree), check=False)
        await git.run("worktree", "prune", check=False)
        shutil.rmtree(tree, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


async def land(git: Git, branch: str, head: str) -> tuple[str, str]:
    """Fast-forward ``branch`` (checked out, clean) to ``head``; return ``(old, new)`` heads."""
    if await git.checked_out() != branch:
        raise ChangeRefused(f"{branch} is no longer checked out in {git.repo}: the installed code would not change")
    if not await git.clean():
        raise ChangeRefused(f"{branch} is checked out in {git.repo} with uncommitted changes: not landed")
    old = await git.out("rev-parse", "--verify", "HEAD^{commit}")
    if not (await git.run("merge-base", "--is-ancestor", old, head, check=False)).ok:
        raise ChangeRefused(f"{branch} moved and is not an ancestor of {head[:12]}: not landed")
    await git.run("merge", "--ff-only", "-q", head)
    return old, await git.out("rev-parse", "HEAD")


async def revert(git: Git, branch: str, old: str, new: str, message: str) -> str:
    """Commit, on ``branch`` at ``new``, the tree of ``old`` (undoing the landed commits); return the commit."""
    if await git.checked_out() != branch:
        raise ChangeRefused(f"{branch} is no longer checked out in {git.repo}")
    head = await git.out("rev-parse", "HEAD")
    if head != new:
        raise ChangeRefused(f"{branch} moved since the landing ({new[:12]} -> {head[:12]}): revert it by hand")
    if not await git.clean():
        raise ChangeRefused(f"{branch} has uncommitted changes in {git.repo}: revert it by hand")
    commit = await git.out("commit-tree", f"{old}^{{tree}}", "-p", new, "-m", message)
    await git.run("merge", "--ff-only", "-q", commit)
    return commit


def summary(outcome: Outcome) -> str:
    """Return the last meaningful line of a command's output."""
    lines = [line for line in outcome.output.splitlines() if line.strip()]
    return one_line(lines[-1])[:300] if lines else "(no output)"


def report_problem(report: dict[str, Any] | None, status: str) -> str | None:
    """Return why an orchestration's report does not allow landing, or None when it is green."""
    if not report:
        return f"the orchestration ended {status} without a report"
    if "error" in report:
        return f"the orchestration failed: {report['error']}"
    if report.get("failed"):
        reasons = "; ".join(f"task {f['task']}: {f.get('reason')}" for f in report["failed"])
        return f"{len(report['failed'])} task(s) failed: {reasons}"
    if not report.get("merged"):
        return "nothing was merged"
    if not report.get("tests_green"):
        return "the tests are red on the integration branch"
    return None
