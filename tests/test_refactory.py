"""`refactorbot refactory demo` as a user runs it: a subprocess, real git, ends green with the repository's path."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path


def test_refactory_demo_ends_green_with_the_report_and_the_repository() -> None:
    refactorbot = Path(sys.executable).parent / "refactorbot"
    done = subprocess.run([str(refactorbot), "refactory", "demo"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "conflict — conflict in calc.py" in out
    assert re.search(r"Orchestration \d+ of plan \d+: done", out)
    assert "tests on the integration branch: green" in out and "(1 conflicts re-queued)" in out
    repo = Path(re.search(r"repository: (\S+)\n", out.split("Orchestration", 1)[1]).group(1))  # type: ignore[union-attr]
    branch = re.search(r"integration branch: (\S+) at", out).group(1)  # type: ignore[union-attr]
    check = subprocess.run(["git", "-C", str(repo), "branch", "--list", "refactory/*"], capture_output=True, text=True)
    assert branch in check.stdout and len(check.stdout.splitlines()) == 4  # three task branches and the integration
    worktrees = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    assert len(worktrees.splitlines()) == 1
    shutil.rmtree(repo.parent)
