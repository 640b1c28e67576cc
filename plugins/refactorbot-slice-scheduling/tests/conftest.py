from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from refactorbot import AtomicSlice, Model, RefactorbotError, operation
from refactorbot.testing import plugin_of

SCHEDULING = "refactorbot_slice_scheduling.plugin"
#: No built-in jobs and a quiet supervisor, unless a test turns them on.
QUIET: dict[str, Any] = {
    "core": {"health_interval": 3600, "timezone": "Europe/Berlin"},
    "slices": {"scheduling": {"heartbeat_every": 0, "alerts_every": 0, "diagnostics_every": 0}},
}


class Echo(Model):
    text: str = "tick"
    fail: bool = False
    hold: bool = False
    delay: float = 0.0


class Recorder(AtomicSlice):
    """A slice jobs call: records each call and its wall-clock time; may fail or wait on a gate."""

    slice_id = "recorder"
    uses_database = False
    calls: ClassVar[list[tuple[str, float]]] = []
    gate: ClassVar[asyncio.Event | None] = None
    entered: ClassVar[asyncio.Event | None] = None
    failures: ClassVar[int] = 0

    @operation
    async def echo(self, params: Echo) -> dict[str, Any]:
        """Record the call; take ``delay`` seconds; fail when asked or while ``failures`` is positive; hold on ``gate``."""
        import time

        type(self).calls.append((params.text, time.time()))
        if params.delay:
            await asyncio.sleep(params.delay)  # the work itself takes this long
        if params.hold and type(self).gate is not None:
            if type(self).entered is not None:
                type(self).entered.set()
            await type(self).gate.wait()
        if params.fail or type(self).failures > 0:
            type(self).failures -= 1
            raise RefactorbotError(f"echo of {params.text} failed as asked")
        return {"echo": params.text, "n": len(type(self).calls)}


RECORDER = plugin_of(slices=[Recorder], name="recorder")


@pytest.fixture(autouse=True)
def fresh_recorder() -> None:
    Recorder.calls = []
    Recorder.gate = None
    Recorder.entered = None
    Recorder.failures = 0


@pytest.fixture
def rb_plugins() -> list[Any]:
    return [SCHEDULING, RECORDER]


@pytest.fixture
def rb_config() -> dict[str, Any]:
    return QUIET


async def until(predicate: Any, timeout: float = 30.0) -> None:
    """Wait for ``predicate()`` to hold, checking as the loop turns."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def ok(host: Any, op: str, /, **payload: Any) -> Any:
    """Call ``op`` through the host; assert it succeeded; return its data."""
    response = await host.call(op, **payload)
    assert response.success, response.error_message
    return response.data


def echo(text: str = "tick", **payload: Any) -> dict[str, Any]:
    """A job target calling ``recorder.echo``."""
    return {"type": "operation", "operation": "recorder.echo", "payload": {"text": text, **payload}}


def quiet(**scheduling: Any) -> dict[str, Any]:
    """``QUIET`` with these ``[slices.scheduling]`` settings on top."""
    return {**QUIET, "slices": {"scheduling": {**QUIET["slices"]["scheduling"], **scheduling}}}
