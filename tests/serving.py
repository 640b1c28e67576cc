"""Run `refactorbot serve` in a real process for the integration tests, and talk to it over HTTP.

    write_config(home, "[core]\\nhealth_interval = 3600\\n", model=model)
    with serve(home) as served:
        served.call("session.list", channel="webhook")
        wait_until(lambda: ...)

``serve`` starts ``python -m refactorbot --home HOME serve`` with a cleaned environment, waits for the
``server.json`` the API plugin writes (its pid the new process's, so a restart never reads the file
a killed server left), yields a ``Served`` with the URL and token, and stops the server (SIGTERM,
then SIGKILL) when the block ends. The server's stderr, and its stdout unless read line by line, go to
``HOME/serve.log``. A test that needs more on ``Served`` (its platform's loopback server, say)
subclasses it and passes ``kind=`` with the extra fields.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import httpx

if TYPE_CHECKING:
    from refactorbot.testing import ModelServer

#: The variable the loopback model's key is read from (the model server accepts any key).
KEY_ENV = "RB_TEST_LOOPBACK_KEY"
#: How long a server may take to write ``server.json``, and to exit after SIGTERM, before the test fails.
START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
#: The communication slice's retries of a failed send, short enough for a test to see them all.
QUICK_SENDS = "[slices.communication]\nsend_backoff = 0.05\nsend_attempts = 3\n"


def last_user(body: dict[str, Any]) -> str:
    """Return the last user message of a chat completion request."""
    return str(next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user"))


def echo_model(answers: Mapping[str, str]) -> Callable[[dict[str, Any]], str]:
    """Return a ``ModelServer`` responder: the answer given for the last user message, else ``echo: <message>``."""

    def respond(body: dict[str, Any]) -> str:
        text = last_user(body)
        return answers.get(text, f"echo: {text}")

    return respond


def clean_env(*drop: str, **extra: str) -> dict[str, str]:
    """Return this process's environment without ``RB_*``, ``REFACTORBOT_*`` and the ``drop`` prefixes, plus ``extra``.

    The loopback model's key is set, so a configuration from ``write_config(model=...)`` works.
    """
    prefixes = ("RB_", "REFACTORBOT_", *drop)
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env[KEY_ENV] = "sk-loopback"
    env.update(extra)
    return env


def model_toml(model: ModelServer) -> str:
    """Return the ``[llm]`` and ``[gateways.litellm]`` tables that send every turn to ``model``."""
    return (
        f'[llm]\nmodel = "openai/scripted"\n'
        f'[gateways.litellm]\napi_base = "{model.base_url}"\napi_key_env = "{KEY_ENV}"\n'
    )


def write_config(home: Path, toml: str = "", *, model: ModelServer | None = None) -> None:
    """Write ``home/refactorbot.toml``: the API on a free port, the loopback ``model`` if given, then ``toml``."""
    home.mkdir(parents=True, exist_ok=True)
    tables = "[plugins.api]\nport = 0\n" + ("" if model is None else model_toml(model))
    (home / "refactorbot.toml").write_text(tables + toml)


def cli(
    home: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    python: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``python [python...] -m refactorbot --home HOME ARGS`` to the end and return what it printed."""
    return subprocess.run(
        [sys.executable, *python, "-m", "refactorbot", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=dict(clean_env() if env is None else env),
        cwd=cwd,
        timeout=120,
    )


def wait_until(
    predicate: Callable[[], object], timeout: float = 60.0, explain: Callable[[], object] | None = None
) -> None:
    """Return once ``predicate()`` holds; fail with ``explain()`` (or a plain message) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(explain() if explain is not None else "condition not met in time")
        time.sleep(0.02)


@dataclass
class Served:
    """A running ``refactorbot serve``: its home, process, control API URL and token."""

    home: Path
    proc: subprocess.Popen[str]
    url: str
    token: str
    #: The loopback model the server's turns go to, when the test gave one.
    model: ModelServer | None = field(default=None, kw_only=True)
    #: The lines the server printed on stdout, when ``serve(read_stdout=True)``.
    stdout: list[str] = field(default_factory=list, kw_only=True)

    @property
    def headers(self) -> dict[str, str]:
        """Return the Authorization header of the control API."""
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, target: str, **payload: Any) -> Any:
        """Call ``slice.operation`` over the control API; assert it succeeded and return its data."""
        slice_id, _, op = target.partition(".")
        answer = httpx.post(
            f"{self.url}/slices/{slice_id}/operations/{op}",
            json=payload,
            headers=self.headers,
            trust_env=False,
            timeout=30,
        ).json()
        assert answer["success"], answer
        return answer["data"]

    def turns(self) -> list[str]:
        """Return the last user message of every request the loopback model received, in order."""
        assert self.model is not None, "serve() was given no model"
        return [last_user(r) for r in self.model.requests]

    def log(self) -> str:
        """Return what the server wrote to ``serve.log`` so far."""
        return (self.home / "serve.log").read_text(errors="replace")

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would, and wait for it."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def wait_for_channels(served: Served, *names: str, timeout: float = 60.0) -> None:
    """Wait until the named channels (every enabled one when none is named) report ``running``."""

    def rows() -> list[dict[str, Any]]:
        channels = served.call("communication.channels")["channels"]
        return [c for c in channels if (c["name"] in names if names else c["enabled"])]

    def running() -> bool:
        found = rows()
        return len(found) >= len(names) and all(c["status"] == "running" for c in found)

    wait_until(running, timeout, explain=rows)


S = TypeVar("S", bound=Served)


@contextlib.contextmanager
def serve(
    home: Path,
    *,
    env: Mapping[str, str] | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    read_stdout: bool = False,
    cwd: Path | None = None,
    kind: type[S] = Served,  # type: ignore[assignment]
    **fields: Any,
) -> Iterator[S]:
    """Run ``refactorbot serve`` on ``home`` until the block ends; yield ``kind(home, proc, url, token, **fields)``.

    ``env`` defaults to ``clean_env()``. ``stdin=subprocess.PIPE`` lets the test type into the server;
    ``read_stdout`` collects its stdout lines in ``Served.stdout`` as they come.
    """
    lines: list[str] = []
    with (home / "serve.log").open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "refactorbot", "--home", str(home), "serve"],
            stdin=stdin,
            stdout=subprocess.PIPE if read_stdout else log,
            stderr=log,
            text=True,
            env=dict(clean_env() if env is None else env),
            cwd=cwd,
        )
    reader = threading.Thread(target=_read_lines, args=(proc, lines), daemon=True) if read_stdout else None
    if reader is not None:
        reader.start()
    try:
        url, token = _wait_for_server(home, proc, lines)
        yield kind(home, proc, url, token, stdout=lines, **fields)
    finally:
        try:
            stop(proc)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            if reader is not None:
                reader.join(timeout=10)


def stop(proc: subprocess.Popen[str]) -> None:
    """Stop a server with SIGTERM; kill it and fail if it has not exited after ``STOP_TIMEOUT`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise AssertionError(f"server ignored SIGTERM for {STOP_TIMEOUT:g}s and was killed") from None


def _read_lines(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))


def _wait_for_server(home: Path, proc: subprocess.Popen[str], stdout: list[str]) -> tuple[str, str]:
    """Return the URL and token once ``server.json`` names ``proc``; fail with the log if it exits first."""
    deadline = time.monotonic() + START_TIMEOUT
    while (url := _advertised(home, proc.pid)) is None:
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            assert time.monotonic() < deadline, f"server did not start in {START_TIMEOUT:g}s:\n{_output(home, stdout)}"
            continue
        raise AssertionError(f"server exited with {proc.returncode} before serving:\n{_output(home, stdout)}")
    return url, (home / "api-token").read_text().strip()


def _advertised(home: Path, pid: int) -> str | None:
    """Return the URL in ``home/server.json`` if the file is there and names ``pid`` (the API writes it whole)."""
    try:
        info = json.loads((home / "server.json").read_text())
    except FileNotFoundError:
        return None
    return str(info["url"]) if info.get("pid") == pid else None


def _output(home: Path, stdout: list[str]) -> str:
    log = (home / "serve.log").read_text(errors="replace")
    return log + ("\n[stdout]\n" + "\n".join(stdout) if stdout else "")
