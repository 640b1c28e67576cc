"""A test plugin: the ``sink`` slice, whose handlers record what they get and fail on request.

``SINKS[home]`` is the record of the sink running on ``home``: every event delivered (with its
offset), per handler, and the failures to inject. Handlers wait on ``gate`` while it is cleared,
so a test holds a subscriber back without sleeping.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refactorbot import AtomicSlice, hookimpl
from refactorbot.events import Event, subscribe


@dataclass
class Record:
    seen: list[tuple[str, int | None, int]] = field(default_factory=list)
    fail: dict[int, int] = field(default_factory=dict)  # payload n -> failures left
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    published_from_handler: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gate.set()

    def of(self, handler: str) -> list[int]:
        return [n for h, _, n in self.seen if h == handler]

    def offsets(self, handler: str) -> list[int | None]:
        return [o for h, o, _ in self.seen if h == handler]


SINKS: dict[Path, Record] = {}


def record_for(home: Path) -> Record:
    return SINKS.setdefault(Path(home).resolve(), Record())


class SinkSlice(AtomicSlice):
    slice_id = "sink"
    uses_database = False

    def _record(self) -> Record:
        return record_for(self.ctx.home)

    async def _take(self, handler: str, event: Event) -> None:
        record = self._record()
        await record.gate.wait()
        n = int(event.payload.get("n", -1))
        left = record.fail.get(n, 0)
        if left:
            record.fail[n] = left - 1
            raise RuntimeError(f"refusing n={n}")
        record.seen.append((handler, event.offset, n))
        record.arrived.set()
        if event.payload.get("echo"):
            await self.ctx.publish("work.echoed", {"n": n})
            record.published_from_handler.append(n)

    @subscribe("work.*")
    async def on_work(self, event: Event) -> None:
        await self._take("on_work", event)

    @subscribe("audit.*", name="sink.auditor", start="earliest")
    async def on_audit(self, event: Event) -> None:
        await self._take("auditor", event)


@hookimpl
def register_slices(register: Any) -> None:
    register(SinkSlice)
