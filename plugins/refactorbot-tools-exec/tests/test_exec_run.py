"""Behaviour of ``exec_run``: output, caps, timeouts, environment and working folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from refactorbot.errors import ToolError
from refactorbot.tools import ToolContext
from refactorbot_tools_exec import ExecRun

PROGRAMS = {"allowed_programs": ["echo", "ls", "cat", "python3", "git", "wc"]}


async def run(tool: ExecRun, ctx: ToolContext, **arguments):
    return await tool.run(tool.Params.model_validate(arguments), ctx)


@pytest.mark.asyncio
async def test_string_and_argv_forms(workspace: Path, ctx: ToolContext) -> None:
    tool = ExecRun(PROGRAMS)
    result = await run(tool, ctx, command="echo 'hello world' again")
    assert result.ok and result.data["exit_code"] == 0
    assert result.data["stdout"] == "hello world again\n"
    assert result.output.startswith("$ echo 'hello world' again  (exit 0,")
    argv = await run(tool, ctx, command=["echo", "$HOME", "*.py"])
    assert argv.data["stdout"] == "$HOME *.py\n"  # no shell: no expansion, no globbing


@pytest.mark.asyncio
async def test_nonzero_exit_is_reported(workspace: Path, ctx: ToolContext) -> None:
    result = await run(ExecRun(PROGRAMS), ctx, command="cat missing.txt")
    assert not result.ok
    assert result.error == "exited with status 1: cat: missing.txt: No such file or directory"
    assert "No such file" in result.data["stderr"]
    assert "--- stderr ---" in result.output


@pytest.mark.asyncio
async def test_cwd_inside_workspace(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "sub").mkdir()
    (workspace / "sub" / "here.txt").write_text("x")
    result = await run(ExecRun(PROGRAMS), ctx, command="ls", cwd="sub")
    assert result.data["stdout"] == "here.txt\n"
    with pytest.raises(ToolError, match="'..' is not allowed"):
        await run(ExecRun(PROGRAMS), ctx, command="ls", cwd="..")
    with pytest.raises(ToolError, match="does not exist"):
        await run(ExecRun(PROGRAMS), ctx, command="ls", cwd="nope")


@pytest.mark.asyncio
async def test_output_is_capped_with_a_marker(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "big.py").write_text("import sys\nsys.stdout.write('x' * 100000)\nsys.stderr.write('e' * 5000)\n")
    tool = ExecRun({**PROGRAMS, "max_output_bytes": 1000})
    result = await run(tool, ctx, command="python3 big.py")
    assert result.ok and result.data["truncated"] is True
    assert result.data["stdout"].startswith("x" * 1000 + "\n[... truncated 99000 more bytes]")
    assert "[... truncated 4000 more bytes]" in result.data["stderr"]


@pytest.mark.asyncio
async def test_timeout_kills_the_process_group(workspace: Path, ctx: ToolContext) -> None:
    """Without the sandbox, the process group is killed (the sandbox kills its whole PID namespace)."""
    (workspace / "spawn.py").write_text(
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "open('child.pid', 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    result = await run(ExecRun({**PROGRAMS, "sandbox": "off"}), ctx, command="python3 spawn.py", timeout=1.0)
    assert time.monotonic() - started < 10
    assert not result.ok and result.data["timed_out"] is True
    assert result.error == "timed out after 1s; killed"
    child = int((workspace / "child.pid").read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild survived the timeout")


@pytest.mark.asyncio
async def test_timeout_is_capped_by_configuration(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "slow.py").write_text("import time\ntime.sleep(30)\n")
    tool = ExecRun({**PROGRAMS, "max_timeout": 0.5})
    result = await run(tool, ctx, command="python3 slow.py", timeout=100)
    assert result.data["timed_out"] is True


@pytest.mark.asyncio
async def test_environment_is_scrubbed(workspace: Path, ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent-secret")
    monkeypatch.setenv("RB_PASSED", "visible")
    (workspace / "env.py").write_text("import os, json\nprint(json.dumps(dict(os.environ)))\n")
    import json

    plain = await run(ExecRun(PROGRAMS), ctx, command="python3 env.py")
    env = json.loads(plain.data["stdout"])
    assert "OPENAI_API_KEY" not in env and "RB_PASSED" not in env
    assert env["HOME"] == str(workspace.resolve())
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["LANG"] == "C.UTF-8"
    passed = await run(
        ExecRun({**PROGRAMS, "env_passthrough": ["RB_PASSED", "NOT_SET"]}), ctx, command="python3 env.py"
    )
    env = json.loads(passed.data["stdout"])
    assert env["RB_PASSED"] == "visible" and "NOT_SET" not in env and "OPENAI_API_KEY" not in env


@pytest.mark.asyncio
async def test_git_runs_without_hooks(workspace: Path, ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(name, "Test")
    for name in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(name, "test@example.invalid")
    tool = ExecRun(
        {
            **PROGRAMS,
            "env_passthrough": ["GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"],
        }
    )
    assert (await run(tool, ctx, command="git init -q")).ok
    hook = workspace / ".git" / "hooks" / "pre-commit"
    hook.parent.mkdir(exist_ok=True)  # git init copies no templates, so there is no hooks folder
    hook.write_text("#!/bin/sh\ntouch hooked\n")
    hook.chmod(0o755)
    (workspace / "a.txt").write_text("a")
    assert (await run(tool, ctx, command="git add a.txt")).ok
    commit = await run(tool, ctx, command=["git", "commit", "-q", "-m", "first"])
    assert commit.ok, commit.output
    assert not (workspace / "hooked").exists()
    log = await run(tool, ctx, command="git log --oneline")
    assert "first" in log.data["stdout"]


def test_bad_configuration_is_a_clear_error() -> None:
    from refactorbot.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[tools.exec\]: path"):
        ExecRun({"path": "relative/bin"})
    with pytest.raises(ConfigError, match="env_passthrough"):
        ExecRun({"env_passthrough": ["NOT-A-NAME"]})
    with pytest.raises(ConfigError, match="unknown_key"):
        ExecRun({"unknown_key": 1})
