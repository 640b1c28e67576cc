"""``MasterCore(only=...)``: a one-shot host starts the slices it needs, not every installed one."""

from __future__ import annotations

from pathlib import Path

import pytest
from refactorbot import AtomicSlice, operation
from refactorbot.config import load_settings
from refactorbot.errors import SliceUnavailable
from refactorbot.master import MasterCore
from refactorbot.models import ErrorType
from refactorbot.plugins import PluginHost
from refactorbot.testing import plugin_of

pytestmark = pytest.mark.asyncio

started: list[str] = []


class Tracked(AtomicSlice):
    uses_database = False

    async def start(self) -> None:
        started.append(self.slice_id)


class Base(Tracked):
    slice_id = "base"

    @operation
    async def ping(self) -> str:
        """Answer pong."""
        return "pong"


class Middle(Tracked):
    slice_id = "middle"
    requires = ("base",)

    @operation
    async def ping(self) -> str:
        """Ask base."""
        return f"middle+{await self.ctx.call('base.ping')}"


class Top(Tracked):
    slice_id = "top"
    requires = ("middle", "ghost")  # a required slice that is not installed is skipped, as in a full start

    @operation
    async def ping(self) -> str:
        """Ask middle."""
        return f"top+{await self.ctx.call('middle.ping')}"


class Loner(Tracked):
    slice_id = "loner"

    @operation
    async def ping(self) -> str:
        """Answer alone."""
        return "loner"


class Caller(Tracked):
    """Calls ``loner`` without declaring it in ``requires``."""

    slice_id = "caller"

    @operation
    async def ping(self) -> str:
        """Ask loner (undeclared)."""
        try:
            return str(await self.ctx.call("loner.ping"))
        except SliceUnavailable as exc:
            return f"degraded: {exc}"


class Policy(Tracked):
    """The slice of a plugin whose runtime hook acts through it (as the providers slice's budgets do)."""

    slice_id = "policy"


def before_operation(request: object) -> None:
    return None


def host(tmp_path: Path, only: set[str] | None) -> MasterCore:
    plugins = PluginHost({})
    plugins.register(plugin_of(slices=[Base, Middle, Top, Loner, Caller], name="app"))
    plugins.register(plugin_of(slices=[Policy], hooks=[before_operation], name="policy-plugin"))
    return MasterCore(load_settings(tmp_path, env={}), plugins, {}, serving=False, only=only)


async def test_only_starts_the_target_what_it_requires_and_hook_slices(tmp_path: Path) -> None:
    started.clear()
    async with host(tmp_path, {"top"}) as master:
        assert sorted(started) == ["base", "middle", "policy", "top"]
        assert started.index("base") < started.index("middle") < started.index("top")  # dependency order kept
        assert (await master.call("top.ping")).data == "top+middle+pong"
        refused = await master.call("loner.ping")
        assert refused.error_type is ErrorType.SLICE_UNAVAILABLE
        assert refused.error_message.startswith("slice 'loner' is not started: this one-shot host starts only top")
        assert {row["slice_id"]: row["status"] for row in master.slice_status()}["loner"] == "pending"
        # an unknown slice is still named as unknown, with every enabled slice listed
        unknown = await master.call("nope.ping")
        assert unknown.error_message == (
            "unknown slice 'nope' (installed and enabled: base, caller, loner, middle, policy, top)"
        )
        assert await master.start_slice("loner")  # a slice left out can still be started on demand
        assert (await master.call("loner.ping")).data == "loner"


async def test_an_undeclared_callee_is_unavailable_in_a_subset(tmp_path: Path) -> None:
    started.clear()
    async with host(tmp_path, {"caller"}) as master:
        assert sorted(started) == ["caller", "policy"]
        answer = (await master.call("caller.ping")).data
        assert answer.startswith("degraded: slice 'loner' is not started")


async def test_without_only_every_enabled_slice_starts(tmp_path: Path) -> None:
    started.clear()
    async with host(tmp_path, None) as master:
        assert sorted(started) == ["base", "caller", "loner", "middle", "policy", "top"]
        assert (await master.call("caller.ping")).data == "loner"
