"""``exec_run``: run one allow-listed program without a shell, inside the workspace."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from refactorbot import (
    GitConfigUnreadable,
    Model,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
    Workspace,
    git_config_keys,
    git_environment,
    git_overrides,
    workspace_for,
)

from refactorbot_tools_exec import repository as repo
from refactorbot_tools_exec.policy import CommandPolicy, ExecConfig, PreparedCommand
from refactorbot_tools_exec.sandbox import Sandbox, probe

_CHUNK = 65_536


class RunParams(Model):
    """Arguments of ``exec_run``."""

    model_config = ConfigDict(extra="forbid")

    command: str | list[str] = Field(
        description='the program and its arguments: a list like ["git", "status"] or one string like \'git status\''
    )
    cwd: str = Field(".", min_length=1, max_length=1024, description="working folder relative to the workspace")
    timeout: float | None = Field(None, gt=0, description="seconds before the program is killed")


class ExecRun(Tool):
    """Run an allow-listed program without a shell."""

    name = "exec_run"
    description = (
        "Run one allow-listed program (no shell: no pipes, redirection, chaining, globbing or variables) "
        "in the workspace and return its exit code, stdout and stderr."
    )
    Params = RunParams
    config_section: ClassVar[str] = "exec"
    category: ClassVar[str] = "exec"
    Config: ClassVar[type[BaseModel]] = ExecConfig

    settings: ExecConfig

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.policy = CommandPolicy(self.settings)
        self._probed: Sandbox | None = None

    def workspace(self, ctx: ToolContext) -> Workspace:
        """Return the configured workspace, or the caller's."""
        return workspace_for(self.settings.workspace, ctx.workspace)

    def sandbox(self) -> Sandbox | None:
        """Return the OS sandbox commands run in, or None (``sandbox = "off"`` or not usable here)."""
        if self.settings.sandbox == "off":
            return None
        found = self._probe()
        return found if found.available else None

    def _probe(self) -> Sandbox:
        if self._probed is None:
            s = self.settings
            self._probed = probe(s.bwrap, s.network, s.sandbox_ro_paths, s.path, shutil.which("true", path=s.path))
        return self._probed

    def warnings(self) -> list[str]:
        """Say when commands run without the OS sandbox, and why."""
        if self.settings.sandbox == "off":
            return ['no OS sandbox: [tools.exec] sandbox = "off"; commands run with the policy checks only']
        found = self._probe()
        if found.available:
            return []
        if self.settings.require_sandbox:
            return [f"no OS sandbox: {found.reason}; every call is refused (require_sandbox = true)"]
        return [f"no OS sandbox: {found.reason}; commands run with the policy checks only"]

    async def run(self, params: RunParams, ctx: ToolContext) -> ToolResult:
        """Check the command, run it (in the sandbox when there is one) with caps and a timeout."""
        ws = self.workspace(ctx)
        if self._probed is None and self.settings.sandbox != "off":
            await asyncio.to_thread(self._probe)  # once: it starts bwrap
        sandbox = self.sandbox()
        if sandbox is None and self.settings.require_sandbox:
            raise ToolError(f"exec_run requires the OS sandbox, which is unavailable: {self._probe().reason}")
        prepared = self.policy.prepare(params.command, ws, params.cwd, sandboxed=sandbox is not None)
        timeout = min(params.timeout or self.settings.timeout, self.settings.max_timeout)
        env = self.policy.environment(ws)
        mounts: list[tuple[str, Path]] = []
        if prepared.git is not None:
            git_env, mounts = await self._git_environment(prepared, ws, env, timeout)
            env.update(git_env)
        return await self.execute(prepared, env, timeout, sandbox=sandbox, workspace=ws, mounts=mounts)

    async def _git_environment(
        self, prepared: PreparedCommand, ws: Workspace, env: dict[str, str], timeout: float
    ) -> tuple[dict[str, str], list[tuple[str, Path]]]:
        """Return git's isolated environment (its repository pinned, risky settings neutralized) and
        the sandbox mounts a linked worktree's repository needs."""
        found = await asyncio.to_thread(repo.find_repository, ws, prepared.cwd)
        init = prepared.git == "init"
        git_env = repo.git_variables(ws, found, init=init)
        keys: list[str] = []
        if found is not None and not init:
            probe_env = {**env, **git_environment(env, home=ws.root, settings=()), **git_env}
            try:
                keys = await git_config_keys(prepared.cwd, probe_env, timeout=min(timeout, 10.0), git=prepared.program)
            except GitConfigUnreadable as exc:
                raise ToolError(str(exc)) from None
        try:
            settings = git_overrides(keys)
        except GitConfigUnreadable as exc:
            raise ToolError(str(exc)) from None
        git_env.update(git_environment(env, home=ws.root, settings=settings))
        return git_env, found.mounts() if found is not None and not init else []

    async def execute(
        self,
        prepared: PreparedCommand,
        env: dict[str, str],
        timeout: float,
        *,
        sandbox: Sandbox | None = None,
        workspace: Workspace | None = None,
        mounts: Sequence[tuple[str, Path]] = (),
    ) -> ToolResult:
        """Run ``prepared`` in its own process group (in ``sandbox`` if given, with ``mounts`` beyond the
        workspace); kill it on timeout."""
        started = time.perf_counter()
        cap = self.settings.max_output_bytes
        argv0 = os.path.basename(prepared.program)  # argv[0] as the model wrote it; run by absolute path
        executable = prepared.program
        argv = [argv0, *prepared.args]
        if sandbox is not None:
            root = workspace.root if workspace is not None else prepared.cwd
            argv = sandbox.argv([argv0, *prepared.args], root, prepared.cwd, mounts)
            executable = sandbox.bwrap
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                executable=executable,
                cwd=prepared.cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise ToolError(f"cannot start {prepared.shown.split()[0]}: {exc.strerror or exc}") from None
        assert proc.stdout is not None and proc.stderr is not None
        readers = [asyncio.ensure_future(_read_capped(s, cap)) for s in (proc.stdout, proc.stderr)]
        timed_out = False
        try:
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                timed_out = True
        finally:
            if sandbox is not None and proc.returncode is None:
                # Kill the sandbox's PID 1: the kernel kills every process of the namespace before
                # bwrap sees it exit, so nothing of the call is left once bwrap has been reaped.
                _kill_children(proc.pid)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), 5.0)
            _kill_group(proc.pid)  # also ends anything the program left running in the background
            if proc.returncode is None:
                await proc.wait()
        done, pending = await asyncio.wait(readers, timeout=2.0)
        for task in pending:
            task.cancel()
        (out, out_total), (err, err_total) = (t.result() if t in done else (b"", 0) for t in readers)
        duration_ms = (time.perf_counter() - started) * 1000
        code = proc.returncode
        stdout, stderr = _text(out, out_total), _text(err, err_total)
        output = _format(prepared.shown, code, duration_ms, stdout, stderr, timed_out, timeout)
        data = {
            "argv": [os.path.basename(prepared.program), *prepared.args],
            "exit_code": code,
            "stdout": stdout,
            "stderr": stderr,
            "timed_out": timed_out,
            "truncated": out_total > len(out) or err_total > len(err),
            "duration_ms": round(duration_ms, 3),
            "sandbox": "bwrap" if sandbox is not None else None,
        }
        if timed_out:
            return ToolResult(ok=False, output=output, data=data, error=f"timed out after {timeout:g}s; killed")
        if code != 0:
            return ToolResult(ok=False, output=output, data=data, error=_exit_error(code, stderr or stdout))
        return ToolResult(output=output, data=data)


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, int]:
    kept = bytearray()
    total = 0
    while True:
        chunk = await stream.read(_CHUNK)
        if not chunk:
            return bytes(kept), total
        total += len(chunk)
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]


def _exit_error(code: int | None, text: str) -> str:
    # The error is one line; its last non-empty output line is usually the reason.
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("[... truncated")]
    reason = lines[-1][:200] if lines else ""
    return f"exited with status {code}" + (f": {reason}" if reason else "")


def _kill_children(pid: int) -> None:
    """SIGKILL the direct children of ``pid`` (for bwrap: the sandbox's PID 1)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            children = [int(c) for c in handle.read().split()]
    except OSError:
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        children.append(int(entry))
    for child in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _text(data: bytes, total: int) -> str:
    text = data.decode("utf-8", errors="replace")
    if total > len(data):
        text += f"\n[... truncated {total - len(data)} more bytes]"
    return text


def _format(shown: str, code: int | None, ms: float, stdout: str, stderr: str, timed_out: bool, timeout: float) -> str:
    status = f"killed after {timeout:g}s timeout" if timed_out else f"exit {code}"
    parts = [f"$ {shown}  ({status}, {ms:.0f} ms)"]
    if stdout:
        parts += ["--- stdout ---", stdout.rstrip("\n")]
    if stderr:
        parts += ["--- stderr ---", stderr.rstrip("\n")]
    if not stdout and not stderr:
        parts.append("(no output)")
    return "\n".join(parts)
