"""git with its configuration isolated (``refactorbot.gitenv``), on real repositories with real git."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from refactorbot import (
    GIT_FIXED,
    GitConfigUnreadable,
    git_config_keys,
    git_environment,
    git_neutral,
    git_overrides,
)

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def git(env: dict[str, str], cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=check)


def plant(repo: Path, ran: Path) -> None:
    """A repository whose configuration, hooks and attributes would each run a program."""
    hooks = repo / ".git" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    for name in ("pre-commit", "post-commit", "commit-msg", "post-checkout", "post-merge", "reference-transaction"):
        script = hooks / name
        script.write_text(f"#!/bin/sh\ntouch {ran}/hook-{name}\n")
        script.chmod(0o755)
    with open(repo / ".git" / "config", "a") as config:
        config.write(
            f'[filter "x"]\n\tclean = touch {ran}/clean\n\tsmudge = touch {ran}/smudge\n\trequired = true\n'
            f'[diff "t"]\n\ttextconv = touch {ran}/textconv\n'
            f"[diff]\n\texternal = touch {ran}/external\n"
            f"[core]\n\tpager = touch {ran}/pager\n\tfsmonitor = touch {ran}/fsmonitor\n"
            f"[pager]\n\tlog = touch {ran}/pager-log\n"
            f"[gpg]\n\tprogram = touch {ran}/gpg\n[commit]\n\tgpgSign = true\n"
        )
    (repo / ".gitattributes").write_text("* filter=x diff=t\n")


def test_the_environment_keeps_only_what_git_needs(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OPENAI_API_KEY": "sk-secret", "GIT_DIR": "/elsewhere"}
    env = git_environment(base, home=tmp_path, identity=IDENTITY)
    assert env["PATH"] == "/usr/bin:/bin" and env["LANG"] == "C.UTF-8" and env["HOME"] == str(tmp_path)
    assert "OPENAI_API_KEY" not in env and "GIT_DIR" not in env
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == os.devnull
    assert env["GIT_AUTHOR_NAME"] == "Test" and env["GIT_TERMINAL_PROMPT"] == "0"
    assert int(env["GIT_CONFIG_COUNT"]) == len(GIT_FIXED)
    pairs = [(env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"]) for i in range(len(GIT_FIXED))]
    assert pairs == list(GIT_FIXED)
    assert git_environment({}, home=tmp_path)["PATH"] == os.defpath


def test_global_configuration_in_home_is_never_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = From Home\n[alias]\n\tst = status\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = git_environment(home=home, identity=IDENTITY)
    git(env, repo, "init", "-q")
    assert git(env, repo, "config", "--get", "user.name", check=False).stdout == ""
    assert git(env, repo, "st", check=False).returncode != 0  # the alias from ~/.gitconfig is unknown


@pytest.mark.asyncio
async def test_a_planted_repository_runs_nothing_with_its_overrides(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    ran.mkdir()
    repo = tmp_path / "repo"
    repo.mkdir()
    env = git_environment(home=tmp_path, identity=IDENTITY)
    git(env, repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("one\n")
    git(env, repo, "add", "a.txt")
    git(env, repo, "commit", "-q", "-m", "base")
    git(env, repo, "branch", "side")
    plant(repo, ran)

    keys = await git_config_keys(repo, env)
    assert "filter.x.clean" in keys and "diff.t.textconv" in keys and "core.pager" in keys
    safe = git_environment(home=tmp_path, identity=IDENTITY, settings=git_overrides(keys))
    (repo / "a.txt").write_text("one\ntwo\n")
    for args in (
        ["add", "-A"],
        ["diff", "--no-ext-diff", "--cached"],  # an external diff set by the repository fails, never runs
        ["commit", "-q", "-m", "second"],
        ["log", "-p", "-1"],
        ["checkout", "-q", "side"],
        ["checkout", "-q", "main"],
        ["merge", "-q", "--no-edit", "side"],
    ):
        done = git(safe, repo, *args, check=False)
        assert done.returncode == 0, (args, done.stderr)
    (repo / "a.txt").unlink()
    git(safe, repo, "checkout", "--", "a.txt")  # smudge
    assert (repo / "a.txt").read_text() == "one\ntwo\n"
    assert sorted(p.name for p in ran.iterdir()) == []
    # The same repository with the fixed settings only: the hooks and pager stay off, the filter
    # and the diff driver named by the repository's own configuration would run.
    fixed = git_environment(home=tmp_path, identity=IDENTITY)
    git(fixed, repo, "commit", "-q", "--allow-empty", "-m", "third")
    (repo / "b.txt").write_text("bee\n")
    git(fixed, repo, "add", "b.txt", check=False)
    assert not [p.name for p in ran.iterdir() if p.name.startswith(("hook-", "pager", "gpg", "fsmonitor"))]
    assert (ran / "clean").exists()


@pytest.mark.asyncio
async def test_unreadable_configuration_is_one_line(tmp_path: Path) -> None:
    env = {**git_environment(home=tmp_path), "GIT_DIR": str(tmp_path / "missing")}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / ".git").mkdir()
    (tmp_path / "bad" / ".git" / "config").write_text("[broken\n")
    with pytest.raises(GitConfigUnreadable, match="cannot read the repository's git configuration"):
        await git_config_keys(tmp_path / "bad", {**git_environment(home=tmp_path), "GIT_DIR": ".git"})
    with pytest.raises(GitConfigUnreadable, match="cannot start git"):
        await git_config_keys(tmp_path, env, git=str(tmp_path / "no-git-here"))


def test_neutral_values_cover_every_command_setting() -> None:
    fixed = {key.lower() for key, _ in GIT_FIXED}
    for key in ("core.hookspath", "core.fsmonitor", "core.pager", "core.editor", "core.sshcommand", "gpg.program"):
        assert key in fixed
    assert git_neutral("filter.Mixed.Case.clean") == ""
    assert git_neutral("filter.x.process") == ""
    assert git_neutral("filter.x.required") == "false"
    assert git_neutral("diff.t.textconv") == "cat"
    assert git_neutral("diff.external") == ""
    assert git_neutral("merge.m.driver") == "false"
    assert git_neutral("pager.log") == "false"
    assert git_neutral("mergetool.vim.cmd") == ""
    assert git_neutral("sendemail.x.tocmd") is None and git_neutral("foo.bar.command") == ""
    assert git_neutral("user.name") is None and git_neutral("core.autocrlf") is None


def test_overrides_keep_the_fixed_settings_first_and_are_bounded() -> None:
    chosen = git_overrides(
        ["core.pager", "filter.x.clean", "FILTER.x.CLEAN", "user.name"], [("init.defaultBranch", "main")]
    )
    assert chosen[: len(GIT_FIXED)] == list(GIT_FIXED)  # core.pager keeps its fixed value
    assert chosen[len(GIT_FIXED) :] == [("init.defaultBranch", "main"), ("filter.x.clean", "")]
    with pytest.raises(GitConfigUnreadable, match="more than 512 commands"):
        git_overrides([f"filter.f{i}.clean" for i in range(513)])
