"""A test plugin: the ``sink`` slice, whose handlers record what they get, per host home."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refactorbot import AtomicSlice, hookimpl
from refactorbot.events import Event, subscribe


@dataclass
class Record:
    seen: list[tuple[str, int | None, int]] = field(default_factory=list)

    def offsets(self, handler: str) -> list[int | None]:
        return [o for h, o, _ in self.seen if h == handler]


SINKS: dict[Path, Record] = {}


def record_for(home: Path) -> Record:
    return SINKS.setdefault(Path(home).resolve(), Record())


class SinkSlice(AtomicSlice):
    slice_id = "sink"
    uses_database = False

    @subscribe("work.*")
    async def on_work(self, event: Event) -> None:
        record_for(self.ctx.home).seen.append(("on_work", event.offset, int(event.payload["n"])))

    @subscribe("*", name="sink.everything", start="earliest")
    async def on_everything(self, event: Event) -> None:
        record_for(self.ctx.home).seen.append(("everything", event.offset, int(event.payload.get("n", -1))))


@hookimpl
def register_slices(register: Any) -> None:
    register(SinkSlice)
