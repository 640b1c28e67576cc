"""Plugins used by the core's own tests: a healthy slice and several broken ones."""

from __future__ import annotations

import asyncio
import threading
import time

from pydantic import BaseModel, Field
from refactorbot import (
    AtomicSlice,
    HealthState,
    HealthStatus,
    LLMGateway,
    LLMResponse,
    hookimpl,
    operation,
    subscribe,
)
from refactorbot.events import Event

#: What the hanging plugins of in-process tests wait on; the ``release`` fixture sets it at the
#: end of the test, so no abandoned thread outlives it.
release = threading.Event()


class EchoParams(BaseModel):
    text: str = Field(description="what to echo")
    times: int = Field(1, ge=1, le=10)


class EchoResult(BaseModel):
    text: str


class CounterConfig(BaseModel):
    model_config = {"extra": "forbid"}
    start: int = 0


class EchoSlice(AtomicSlice):
    """Echo text and count events."""

    slice_id = "echo"
    Config = CounterConfig

    def __init__(self, ctx, config=None):
        super().__init__(ctx, config)
        self.seen: list[str] = []
        self.unhealthy = False
        #: ``slow`` calls whose text has a gate here wait until the test sets it (instead of sleeping);
        #: each announces itself on ``entered`` and records ``enter``/``leave`` in ``trace``.
        self.gates: dict[str, asyncio.Event] = {}
        self.entered: asyncio.Queue[str] = asyncio.Queue()
        self.trace: list[str] = []

    @operation
    async def echo(self, params: EchoParams) -> EchoResult:
        """Return the text repeated."""
        return EchoResult(text=params.text * params.times)

    @operation
    async def noop(self) -> None:
        """Do nothing."""

    @operation
    async def boom(self) -> None:
        """Raise an error."""
        raise RuntimeError("kaboom")

    @operation
    async def slow(self, params: EchoParams) -> EchoResult:
        """Sleep ``times`` tenths of a second (or wait until the gate named ``text`` opens)."""
        gate = self.gates.get(params.text)
        if gate is None:
            await asyncio.sleep(params.times / 10)
            return EchoResult(text=params.text)
        self.trace.append(f"enter {params.text}")
        self.entered.put_nowait(params.text)
        try:
            await gate.wait()
        finally:
            self.trace.append(f"leave {params.text}")
        return EchoResult(text=params.text)

    @operation
    async def announce(self, params: EchoParams) -> None:
        """Publish an event."""
        await self.ctx.publish("echo.said", {"text": params.text})

    @operation
    async def ask(self, params: EchoParams) -> dict:
        """Call another slice through the host."""
        return await self.ctx.call(params.text, text="hi")

    @subscribe("echo.*")
    async def on_echo(self, event: Event) -> None:
        self.seen.append(event.payload["text"])

    async def health_check(self) -> HealthStatus:
        if self.unhealthy:
            return HealthStatus(status=HealthState.UNHEALTHY, message="told to be unhealthy")
        return await super().health_check()


class Plugin:
    REFACTORBOT_API = 1

    @hookimpl
    def register_slices(self, register):
        register(EchoSlice)


echo_plugin = Plugin()


class FailingInitSlice(AtomicSlice):
    slice_id = "badinit"
    uses_database = False

    async def initialize(self) -> None:
        raise RuntimeError("cannot open the thing")

    @operation
    async def noop(self) -> None:
        """Nothing."""


class HangingStopSlice(AtomicSlice):
    slice_id = "hangstop"
    uses_database = False

    async def stop(self) -> None:
        await asyncio.sleep(3600)

    @operation
    async def noop(self) -> None:
        """Nothing."""


class BrokenPlugins:
    REFACTORBOT_API = 1

    @hookimpl
    def register_slices(self, register):
        register(FailingInitSlice)
        register(HangingStopSlice)


broken_slices_plugin = BrokenPlugins()


class RaisingRegistration:
    REFACTORBOT_API = 1

    @hookimpl
    def register_slices(self, register):
        raise ValueError("registration exploded")


class WrongApi:
    REFACTORBOT_API = 99

    @hookimpl
    def register_slices(self, register):
        register(EchoSlice)


class DuplicateEcho:
    REFACTORBOT_API = 1

    @hookimpl
    def register_slices(self, register):
        register(EchoSlice)


class StallParams(BaseModel):
    seconds: float = Field(0.0, ge=0, le=5)


class StallSlice(AtomicSlice):
    """Hold the event loop, as a plugin that forgets to await does."""

    slice_id = "stall"
    uses_database = False

    @operation
    async def stall(self, params: StallParams) -> None:
        """Sleep without awaiting."""
        time.sleep(params.seconds)

    @operation
    async def checked(self) -> str:
        """Answer at once (the stalling policy holds the loop before it runs)."""
        return "checked"


class StallPlugin:
    REFACTORBOT_API = 1

    @hookimpl
    def register_slices(self, register):
        register(StallSlice)


stall_plugin = StallPlugin()


class StallingPolicy:
    """A ``before_operation`` hook that holds the loop before ``stall.checked``."""

    REFACTORBOT_API = 1

    @hookimpl
    def before_operation(self, request):
        if request.target == "stall.checked":
            time.sleep(0.8)


class Static(LLMGateway):
    """A gateway that answers ``<model>:<last message>`` at once."""

    name = "static"

    async def complete(self, messages, model, tools=None, **params):
        return LLMResponse(content=f"{model}:{messages[-1]['content']}")

    async def stream(self, messages, model, tools=None, **params):
        yield  # pragma: no cover


class Gateways:
    """A plugin registering ``Static``."""

    REFACTORBOT_API = 1

    @hookimpl
    def register_gateways(self, register):
        register(Static)
