"""Work that runs once in a deployment: the one-process lease and the ``singleton`` helper."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from refactorbot import AtomicSlice, LocalLease, SingletonLease, operation, singleton
from refactorbot.testing import host_running, plugin_of

pytestmark = pytest.mark.asyncio

CONFIG = {"core": {"log_level": "WARNING"}}


class Recorder:
    def __init__(self) -> None:
        self.history: list[tuple[str, int | None]] = []

    async def acquired(self, token: int) -> None:
        self.history.append(("acquired", token))

    async def lost(self) -> None:
        self.history.append(("lost", None))


async def test_the_local_lease_holds_at_once_and_refuses_a_stale_token() -> None:
    seen = Recorder()
    lease = LocalLease("core-test.timer", seen.acquired, seen.lost, "here:1")
    await lease.start()
    token = lease.token
    assert token is not None and lease.holding.is_set() and lease.holder == "here:1"
    assert seen.history == [("acquired", token)]
    assert await lease.is_current(token)
    assert await lease.claim(token, ["a", "b"]) == {"a", "b"}
    await lease.start()  # already held: nothing happens twice
    assert seen.history == [("acquired", token)]

    await lease.stop()
    assert seen.history == [("acquired", token), ("lost", None)]
    assert lease.token is None and not lease.holding.is_set() and lease.holder is None
    assert not await lease.is_current(token)
    assert await lease.claim(token, ["c"]) == set()
    await lease.stop()  # stopping twice runs on_lost once
    assert len(seen.history) == 2

    await lease.start()  # held again: a newer token; work stamped with the old one is refused
    assert lease.token is not None and lease.token > token
    assert await lease.claim(token, ["d"]) == set()
    assert await lease.claim(lease.token, ["d"]) == {"d"}
    await lease.stop()


async def test_a_failing_on_acquired_lets_the_lease_go() -> None:
    lost: list[bool] = []

    async def broken(token: int) -> None:
        raise RuntimeError("cannot arm")

    async def on_lost() -> None:
        lost.append(True)

    lease = LocalLease("core-test.broken", broken, on_lost, "here:1")
    await lease.start()
    assert lease.token is None and not lease.holding.is_set() and lost == [True]


@pytest.mark.parametrize("name", ["", "has space", "x" * 201, "new\nline", "slash/no"])
async def test_bad_names_are_refused(name: str) -> None:
    seen = Recorder()
    with pytest.raises(ValueError, match="singleton name"):
        LocalLease(name, seen.acquired, seen.lost, "o")
    with pytest.raises(ValueError, match="singleton name"):
        await singleton(None, name, seen.acquired, seen.lost)


class Holder(AtomicSlice):
    """Holds one lease from start to stop."""

    slice_id = "holder"
    uses_database = False

    async def start(self) -> None:
        self.seen = Recorder()
        self.lease = await singleton(self.ctx, "holder.work", self.seen.acquired, self.seen.lost)

    async def stop(self) -> None:
        await self.lease.stop()

    @operation
    async def state(self) -> dict[str, Any]:
        """What the lease says."""
        return {"kind": type(self.lease).__name__, "token": self.lease.token, "history": self.seen.history}


async def test_without_a_provider_a_slice_holds_a_local_lease(tmp_path: Path) -> None:
    async with host_running(tmp_path, [plugin_of(slices=[Holder])], config=CONFIG) as host:
        state = (await host.call("holder.state")).data
        assert state["kind"] == "LocalLease"
        assert state["token"] is not None
        assert state["history"] == [["acquired", state["token"]]]
        instance = host.instance("holder")
        assert isinstance(instance, Holder)
        seen = instance.seen
    assert seen.history[-1] == ("lost", None)


class SharedLease(SingletonLease):
    """A lease a plugin provides: held by whoever started first among the leases sharing ``state``."""

    def __init__(self, name: str, on_acquired: Any, on_lost: Any, state: dict[str, Any]) -> None:
        super().__init__(name, on_acquired, on_lost, owner=f"member{len(state['members']) + 1}")
        self.state = state
        state["members"].append(self)

    async def start(self) -> None:
        if self.state["holder"] is None:
            self.state["holder"], self.state["fence"] = self.owner, self.state["fence"] + 1
            self.token = self.state["fence"]
            self.holding.set()
            await self.on_acquired(self.token)
        self.holder = self.state["holder"]

    async def stop(self) -> None:
        if self.token is not None:
            self.token, self.state["holder"] = None, None
            self.holding.clear()
            await self.on_lost()

    async def is_current(self, token: int) -> bool:
        return bool(self.state["fence"] == token)

    async def claim(self, token: int, keys: Iterable[str]) -> set[str]:
        return set(keys) if await self.is_current(token) else set()


async def test_the_first_provider_that_answers_gives_the_lease(tmp_path: Path) -> None:
    state: dict[str, Any] = {"holder": None, "fence": 0, "members": [], "asked": []}

    def provide_singleton_lease(name: str, on_acquired: Any, on_lost: Any, config: Any, env: Any) -> Any:
        state["asked"].append((name, config.home, env.get("RB_MARK")))
        return SharedLease(name, on_acquired, on_lost, state)

    def declines(name: str) -> None:
        state["asked"].append(("declined", name))

    providers = [
        plugin_of(hooks={"provide_singleton_lease": provide_singleton_lease}, name="shared"),
        plugin_of(hooks={"provide_singleton_lease": declines}, name="declines"),
    ]
    env = {"RB_MARK": "m"}
    async with host_running(tmp_path, [plugin_of(slices=[Holder]), *providers], config=CONFIG, env=env) as host:
        state_row = (await host.call("holder.state")).data
        assert state_row["kind"] == "SharedLease" and state_row["token"] == 1
        assert ("holder.work", tmp_path, "m") in state["asked"]
        assert ("declined", "holder.work") in state["asked"]
        # a second member of the same deployment waits: it does not run the work
        second = Recorder()
        lease = await singleton(host.instance("holder").ctx, "holder.work", second.acquired, second.lost)  # type: ignore[union-attr]
        assert isinstance(lease, SharedLease)
        assert lease.token is None and lease.holder == "member1" and second.history == []
    assert state["holder"] is None
