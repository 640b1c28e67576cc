"""A slice with an induced failure rate, installed as a real distribution (dist-info and module) so the
host can hot-reload it, and helpers to drive it."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

IMPROVE = "refactorbot_slice_improve.plugin"
#: Only the improve slice and the flaky one load from what is installed.
ENV = {"RB_LOAD_PLUGINS": "refactorbot-slice-improve,rb-flaky"}

#: ``flaky.work`` fails exactly ``failure_rate`` of its calls, spread evenly (call n fails when
#: floor(n * rate) steps up), with an upstream-timeout message; ``broken_start`` makes it fail to start.
FLAKY = '''
from pydantic import Field
from refactorbot import AtomicSlice, RefactorbotError, SliceConfig, hookimpl, operation

REFACTORBOT_API = 1


class FlakyConfig(SliceConfig):
    failure_rate: float = Field(0.0, ge=0, le=1, description="share of calls to work that fail")
    broken_start: bool = Field(False, description="fail to initialize")


class Flaky(AtomicSlice):
    """Does units of work against an upstream that times out now and then."""

    slice_id = "flaky"
    uses_database = False
    Config = FlakyConfig

    def __init__(self, ctx, config=None):
        super().__init__(ctx, config)
        self.calls = 0

    async def initialize(self):
        if self.config.broken_start:
            raise RuntimeError("cannot reach the upstream at start")
        await super().initialize()

    @operation
    async def work(self) -> int:
        """Do one unit of work; a share of calls fails as configured."""
        self.calls += 1
        rate = self.config.failure_rate
        if int(self.calls * rate) > int((self.calls - 1) * rate):
            raise RefactorbotError(f"upstream timed out after 30s (call {self.calls})")
        return self.calls


@hookimpl
def register_slices(register):
    register(Flaky)
'''


@pytest.fixture
def flaky_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install ``rb-flaky`` into a folder on ``sys.path``, as pip would (module plus dist-info)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "rb_flaky.py").write_text(textwrap.dedent(FLAKY))
    info = site / "rb_flaky-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rb-flaky\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[refactorbot]\nrb_flaky = rb_flaky\n")
    (info / "RECORD").write_text("rb_flaky.py,,\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("rb_flaky", None)


def plan(*actions: dict[str, Any], notes: str = "") -> str:
    """Return a brain answer holding ``actions``."""
    return json.dumps({"actions": list(actions), "notes": notes})


def config_action(setting: str, value: Any, *, risk: str = "low", why: str = "upstream timeouts") -> dict[str, Any]:
    """Return a config action as the brain writes it."""
    return {
        "kind": "config",
        "target": setting,
        "change": value,
        "rationale": why,
        "expected_effect": "fewer failed calls",
        "risk": risk,
        "title": f"Set {setting} to {value}",
    }


async def ok(host: Any, target: str, /, **payload: Any) -> Any:
    """Call ``target`` through the host; assert it succeeded; return its data."""
    response = await host.call(target, **payload)
    assert response.success, response.error_message
    return response.data


async def drive(host: Any, calls: int) -> int:
    """Call ``flaky.work`` ``calls`` times; return how many failed."""
    failed = 0
    for _ in range(calls):
        failed += not (await host.call("flaky.work")).success
    return failed


async def next_event(host: Any, pattern: str) -> Any:
    """Return a future resolved with the next event matching ``pattern``."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def handler(event: Any) -> None:
        if not future.done():
            future.set_result(event)

    unsubscribe = host.bus.subscribe(pattern, handler)
    future.add_done_callback(lambda _: unsubscribe())
    return future
