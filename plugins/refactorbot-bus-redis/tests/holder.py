"""Run as a process: subscribe ``argv[3]`` (from the earliest entry) and hold the first event forever.

Prints ``subscribed`` once its group exists, then ``holding <offset>`` when the handler got an
event (its batch is then pending on this consumer); the test kills it there.
"""

from __future__ import annotations

import asyncio
import sys

from refactorbot import Event
from refactorbot.events import subscribe
from refactorbot_bus_redis.bus import RedisEventBus
from refactorbot_bus_redis.config import RedisConfig


async def main(url: str, namespace: str, name: str) -> None:
    bus = RedisEventBus(RedisConfig(url=url, namespace=namespace, claim_idle=0.3))
    await bus.start()
    forever = asyncio.Event()

    @subscribe("*", name=name, start="earliest")
    async def hold(event: Event) -> None:
        print(f"holding {event.offset}", flush=True)
        await forever.wait()

    bus.subscribe("*", hold)
    await bus.subscribers()[0].group_ready.wait()
    print("subscribed", flush=True)
    await forever.wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
