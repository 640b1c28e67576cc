"""Slices for the isolation tests: one that misbehaves in every way a process can, one that behaves.

The worker process imports this module by name (the host passes it its ``sys.path``).
"""

from __future__ import annotations

import ctypes
import os

from pydantic import BaseModel, Field
from refactorbot import AtomicSlice, hookimpl, operation, subscribe
from refactorbot.events import Event
from refactorbot.operations import Emit

REFACTORBOT_API = 1


class Size(BaseModel):
    mb: int = Field(ge=1)


class Count(BaseModel):
    n: int = Field(ge=1)


class Fragile(AtomicSlice):
    """Runs in its own process: allocates, opens files, spins, exits and segfaults on request."""

    slice_id = "fragile"
    uses_database = False

    def __init__(self, ctx, config=None):
        super().__init__(ctx, config)
        self.seen: list[str] = []

    @operation
    async def pid(self) -> int:
        """Return the process the slice runs in."""
        return os.getpid()

    @operation
    async def allocate(self, params: Size) -> int:
        """Allocate ``mb`` megabytes and touch them."""
        block = bytearray(params.mb * 1_048_576)
        return len(block)

    @operation
    async def open_files(self, params: Count) -> int:
        """Hold ``n`` files open at once."""
        files = [open(os.devnull) for _ in range(params.n)]  # noqa: SIM115
        for handle in files:
            handle.close()
        return len(files)

    @operation
    async def spin(self) -> None:
        """Burn CPU until a limit stops the process."""
        while True:
            pass

    @operation
    async def exit(self) -> None:
        """End the process at once, as a native library calling exit() would."""
        os._exit(3)

    @operation
    async def segfault(self) -> None:
        """Read address 0."""
        ctypes.string_at(0)

    @operation
    async def ask(self) -> str:
        """Call another slice through the host (``ctx.call``) and publish an event."""
        answer = await self.ctx.call("steady.ping")
        await self.ctx.publish("fragile.asked", {"answer": answer})
        return f"steady said {answer}"

    @operation(stream=True)
    async def count(self, params: Count, emit: Emit) -> int:
        """Emit 1..n, then return n."""
        for i in range(1, params.n + 1):
            await emit(i)
        return params.n

    @subscribe("steady.*")
    async def on_steady(self, event: Event) -> None:
        self.seen.append(event.topic)

    @operation
    async def seen_events(self) -> list[str]:
        """Return the topics this slice received."""
        return list(self.seen)


class Steady(AtomicSlice):
    """Runs in the host's process and must keep serving whatever the fragile one does."""

    slice_id = "steady"
    uses_database = False

    def __init__(self, ctx, config=None):
        super().__init__(ctx, config)
        self.topics: list[str] = []

    @operation
    async def ping(self) -> str:
        """Answer pong."""
        return "pong"

    @operation
    async def announce(self) -> None:
        """Publish ``steady.news``."""
        await self.ctx.publish("steady.news", {})

    @subscribe("fragile.*")
    async def on_fragile(self, event: Event) -> None:
        self.topics.append(f"{event.topic} from {event.source}: {event.payload}")


@hookimpl
def register_slices(register):
    register(Fragile)
    register(Steady)
