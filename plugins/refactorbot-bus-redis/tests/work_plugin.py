"""A test plugin: the ``work`` slice, whose operations count their runs per host home."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from refactorbot import AtomicSlice, hookimpl, operation

RUNS: dict[Path, Counter[str]] = {}
#: Set by a test to hold ``work.hold`` until it is set.
GATES: dict[Path, asyncio.Event] = {}
STARTED: dict[Path, asyncio.Event] = {}


def runs_of(home: Path) -> Counter[str]:
    return RUNS.setdefault(Path(home).resolve(), Counter())


class Job(BaseModel):
    key: str


class WorkSlice(AtomicSlice):
    slice_id = "work"
    uses_database = False

    @operation
    async def run(self, params: Job) -> dict[str, Any]:
        """Count one run of ``key``."""
        runs_of(self.ctx.home)[params.key] += 1
        return {"key": params.key, "home": str(self.ctx.home)}

    @operation
    async def hold(self, params: Job) -> str:
        """Count one run of ``key``, then wait for the test's gate."""
        home = Path(self.ctx.home).resolve()
        runs_of(home)[params.key] += 1
        STARTED.setdefault(home, asyncio.Event()).set()
        await GATES.setdefault(home, asyncio.Event()).wait()
        return params.key


@hookimpl
def register_slices(register: Any) -> None:
    register(WorkSlice)
