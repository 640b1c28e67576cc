"""The OS sandbox under ``exec_run`` (bubblewrap): what a program that runs can no longer reach.

An allow-listed interpreter runs whatever code the workspace holds; the policy cannot see inside
it. These tests run such code as an attacker would write it and check what the sandbox stops:
a child detached with ``setsid`` outliving the call, the server's environment through
``/proc/<pid>/environ``, the network, the home directories. bubblewrap is a declared test
requirement: the ``bwrap`` fixture fails (never skips) when it cannot sandbox here.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from refactorbot.errors import ConfigError, ToolError
from refactorbot.tools import ToolContext, ToolResult
from refactorbot_tools_exec import ExecRun

PYTHON = {"allowed_programs": ["python3", "cat", "ls", "grep", "find"]}


async def run(tool: ExecRun, ctx: ToolContext, *command: str, timeout: float | None = None) -> ToolResult:
    return await tool.run(tool.Params(command=list(command), timeout=timeout), ctx)


DETACH = """
import fcntl, os, sys, time
lock = open("held.lock", "w")
ready_r, ready_w = os.pipe()
if os.fork() == 0:
    os.setsid()                      # a new session: out of the caller's process group
    if os.fork() > 0:
        os._exit(0)                  # double fork: the grandchild is re-parented, fully detached
    fcntl.flock(lock, fcntl.LOCK_EX)
    os.write(ready_w, b"x")
    time.sleep(60)
    with open(open("target.txt").read(), "w") as out:
        out.write("escaped")
    os._exit(0)
os.read(ready_r, 1)                  # the detached grandchild holds the lock now
print("detached", flush=True)
"""


@pytest.mark.asyncio
async def test_a_setsid_child_dies_with_the_call(
    bwrap: None, tmp_path: Path, workspace: Path, ctx: ToolContext, outside
) -> None:
    (workspace / "detach.py").write_text(DETACH)
    (workspace / "target.txt").write_text(str(tmp_path / "escaped.txt"))  # outside: no argument may name it
    before = outside()
    result = await run(ExecRun(PYTHON), ctx, "python3", "detach.py")
    assert result.ok and result.data["stdout"] == "detached\n" and result.data["sandbox"] == "bwrap"
    with open(workspace / "held.lock", "w") as lock:
        # the lock is free the moment the call returns: nothing of the sandbox outlived it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert outside() == before and not (tmp_path / "escaped.txt").exists()


HOLD = """
import os, sys, time
out = open("alive.fifo", "w")        # the test reads this FIFO: its end of file is the last holder dying
out.write("held\\n")
out.flush()
if os.fork() == 0:
    os.setsid()                      # a detached grandchild holds the FIFO open too
    time.sleep(120)
    os._exit(0)
time.sleep(120)
"""

SERVER = """
import asyncio, sys
from refactorbot.tools import ToolContext
from refactorbot_tools_exec import ExecRun
tool = ExecRun({"allowed_programs": ["python3"], "timeout": 120, "max_timeout": 120})
ctx = ToolContext(workspace=sys.argv[1])
asyncio.run(tool.run(tool.Params(command=["python3", "hold.py"]), ctx))
"""


def test_the_sandbox_dies_with_the_server(bwrap: None, workspace: Path) -> None:
    # The tool starts bwrap in its own session, so only --die-with-parent ties the call to the
    # server: SIGKILLed, the server runs no cleanup, and every process of the call must go with it.
    os.mkfifo(workspace / "alive.fifo")
    (workspace / "hold.py").write_text(HOLD)
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(workspace)], stdin=subprocess.DEVNULL)
    try:
        fifo = os.open(workspace / "alive.fifo", os.O_RDONLY | os.O_NONBLOCK)
        try:
            ready, _, _ = select.select([fifo], [], [], 60)  # readable once hold.py wrote (a guard, not a margin)
            assert ready and os.read(fifo, 5) == b"held\n", "the sandboxed command did not start"
            server.kill()
            server.wait()
            ready, _, _ = select.select([fifo], [], [], 60)  # end of file once every holder died
            assert ready and os.read(fifo, 1) == b"", "a process of the call outlived the server"
        finally:
            os.close(fifo)
    finally:
        server.kill()
        server.wait()


ENVIRON = """
import json, os, sys
found = {}
for pid in sys.argv[1:] + ["1", "self"] + [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        found[pid] = open(f"/proc/{pid}/environ", "rb").read().decode("utf-8", "replace")
    except OSError as exc:
        found[pid] = f"error: {exc.strerror}"
print(json.dumps(found))
"""


@pytest.mark.asyncio
async def test_the_server_environment_is_unreachable_through_proc(
    bwrap: None, workspace: Path, ctx: ToolContext
) -> None:
    # A process of the server's user holding a key in its environment, as the server does.
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        env={"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-server-secret-0123456789"},
        stdin=subprocess.PIPE,
    )
    try:
        (workspace / "environ.py").write_text(ENVIRON)
        pids = [str(server.pid), str(os.getpid())]
        result = await run(ExecRun(PYTHON), ctx, "python3", "environ.py", *pids)
    finally:
        server.communicate(b"")
    assert result.ok, result.output
    found = json.loads(result.data["stdout"])
    assert all(found[pid].startswith("error:") for pid in pids)  # neither exists in the sandbox
    assert "sk-server-secret" not in result.output
    assert all("OPENAI_API_KEY" not in text for text in found.values())
    assert len(found) < 10  # only the sandbox's own few processes are visible


CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    print("connected")
except OSError as exc:
    print(f"refused: {exc}")
"""


@pytest.mark.asyncio
async def test_no_network_unless_configured(bwrap: None, workspace: Path, ctx: ToolContext) -> None:
    (workspace / "connect.py").write_text(CONNECT)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        port = str(listener.getsockname()[1])
        closed = await run(ExecRun(PYTHON), ctx, "python3", "connect.py", port)
        assert closed.data["stdout"].startswith("refused")
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the test's listener
        opened = await run(ExecRun({**PYTHON, "network": True}), ctx, "python3", "connect.py", port)
        assert opened.data["stdout"] == "connected\n" and opened.data["sandbox"] == "bwrap"
        listener.accept()[0].close()


LOOK = """
import json, os, sys
home, user_home = open("paths.txt").read().split()
report = {"root": sorted(os.listdir("/")), "home": sorted(os.listdir(home))}
for name, path in [("token", os.path.join(home, "api-token")), ("db", os.path.join(home, "master.db")),
                   ("ssh", os.path.join(user_home, ".ssh", "id_ed25519")), ("shadow", "/etc/shadow")]:
    try:
        report[name] = open(path).read()
    except OSError as exc:
        report[name] = f"error: {exc.strerror}"
try:
    open("/usr/pwned", "w")
    report["usr"] = "written"
except OSError as exc:
    report["usr"] = f"error: {exc.strerror}"
with open("inside.txt", "w") as out:
    out.write("the workspace is writable")
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
report["caps"] = [status[k].strip() for k in ("CapEff", "CapPrm", "CapBnd")]
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
report["userns"] = libc.unshare(0x10000000)  # CLONE_NEWUSER: -1 when nested user namespaces are off
print(json.dumps(report))
"""


@pytest.mark.asyncio
async def test_home_directories_and_keys_are_absent(
    bwrap: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "rb-home"  # the refactorbot home: databases, api-token, the workspace inside
    workspace = home / "workspace"
    workspace.mkdir(parents=True)
    (home / "api-token").write_text("rb-token-secret")
    (home / "master.db").write_text("database")
    user_home = tmp_path / "user-home"
    (user_home / ".ssh").mkdir(parents=True)
    (user_home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    monkeypatch.setenv("HOME", str(user_home))
    (workspace / "look.py").write_text(LOOK)
    (workspace / "paths.txt").write_text(f"{home}\n{user_home}")
    ctx = ToolContext(workspace=workspace)
    result = await run(ExecRun(PYTHON), ctx, "python3", "look.py")
    report = json.loads(result.data["stdout"])
    assert report["home"] == ["workspace"]
    for name in ("token", "db", "ssh", "shadow"):
        assert report[name].startswith("error:"), name
    assert report["usr"].startswith("error:")
    assert report["caps"] == ["0000000000000000"] * 3 and report["userns"] == -1  # no capabilities, no new userns
    system = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc", "tmp", "var"}
    assert set(report["root"]) <= system  # no /root, /home, /opt, /srv, /work, ...: only what programs need
    assert (workspace / "inside.txt").read_text() == "the workspace is writable"
    assert "rb-token-secret" not in result.output and "PRIVATE KEY" not in result.output


@pytest.mark.asyncio
async def test_symlink_following_is_contained_by_the_sandbox(
    bwrap: None, workspace: Path, sentinel: Path, ctx: ToolContext
) -> None:
    (workspace / "notes.txt").write_text("do not touch, says the note\n")
    (workspace / "out").symlink_to(sentinel)
    with pytest.raises(ToolError, match="only in the OS sandbox"):
        await run(ExecRun({**PYTHON, "sandbox": "off"}), ctx, "grep", "-R", "touch", ".")
    inside = await run(ExecRun(PYTHON), ctx, "grep", "-R", "touch", ".")
    assert inside.data["stdout"] == "./notes.txt:do not touch, says the note\n"  # the link leads nowhere
    found = await run(ExecRun(PYTHON), ctx, "find", "-L", ".", "-name", "secret.txt")
    assert found.data["stdout"] == ""


@pytest.mark.asyncio
async def test_without_bubblewrap(workspace: Path, ctx: ToolContext) -> None:
    missing = {**PYTHON, "bwrap": "/nonexistent/bwrap"}
    tool = ExecRun(missing)
    assert tool.warnings() == [
        "no OS sandbox: bwrap not found at /nonexistent/bwrap (found /usr/bin/bwrap: set [tools.exec] bwrap);"
        " commands run with the policy checks only"
    ]
    result = await run(tool, ctx, "ls")
    assert result.ok and result.data["sandbox"] is None  # the policy alone
    strict = ExecRun({**missing, "require_sandbox": True})
    assert strict.warnings()[0].endswith("every call is refused (require_sandbox = true)")
    with pytest.raises(ToolError, match="^exec_run requires the OS sandbox, which is unavailable: bwrap not found"):
        await run(strict, ctx, "ls")
    assert ExecRun({**PYTHON, "sandbox": "off"}).warnings() == [
        'no OS sandbox: [tools.exec] sandbox = "off"; commands run with the policy checks only'
    ]
    with pytest.raises(ConfigError, match="require_sandbox"):
        ExecRun({"sandbox": "off", "require_sandbox": True})


def test_bubblewrap_in_use_by_default(bwrap: None) -> None:
    tool = ExecRun({})
    assert tool.warnings() == [] and tool.sandbox() is not None


def test_plugins_doctor_reports_a_missing_sandbox(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "refactorbot.toml").write_text('[tools.exec]\nbwrap = "/nonexistent/bwrap"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    done = subprocess.run(
        [sys.executable, "-m", "refactorbot", "--home", str(home), "plugins", "doctor"],
        capture_output=True,
        text=True,
        env={**env, "RB_LOAD_PLUGINS": "refactorbot-tools-exec"},
        timeout=60,
    )
    assert "warning: exec_run: no OS sandbox: bwrap not found at /nonexistent/bwrap" in done.stderr
    assert done.returncode == 0 and "plugins loaded cleanly" in done.stdout  # a warning is not a failure


@pytest.mark.asyncio
async def test_on_timeout_every_process_of_the_call_is_gone(bwrap: None, workspace: Path, ctx: ToolContext) -> None:
    (workspace / "detach.py").write_text(DETACH + "import time\ntime.sleep(60)\n")
    (workspace / "target.txt").write_text(str(workspace / "never.txt"))
    result = await run(ExecRun(PYTHON), ctx, "python3", "detach.py", timeout=1.0)
    assert result.data["timed_out"] is True and result.data["stdout"] == "detached\n"
    with open(workspace / "held.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the detached grandchild died with the sandbox
