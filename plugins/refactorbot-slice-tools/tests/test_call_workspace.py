"""Per-call workspaces: only below an allowed root, roots registered by slices or configured."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from refactorbot import AtomicSlice, Model, operation
from refactorbot.testing import host_running, plugin_of
from tools_slice_samples import SAMPLE_TOOLS

SLICE = "refactorbot_slice_tools.plugin"
BASE = {"core": {"health_interval": 3600}}


class RootParams(Model):
    model_config = {"extra": "forbid"}

    path: str


class Registrar(AtomicSlice):
    """Registers a workspace root with the tools slice, as the refactory slice does."""

    slice_id = "registrar"
    requires = ("tools",)
    uses_database = False

    @operation
    async def register(self, params: RootParams) -> Any:
        """Ask the tools slice to allow workspaces below ``path``."""
        return await self.ctx.call("tools.allow_workspace_root", path=params.path)


REGISTRAR = plugin_of(slices=[Registrar], name="registrar")


async def echo_in(host: Any, workspace: str) -> dict[str, Any]:
    response = await host.call("tools.execute", tool="echo", arguments={"text": "hi"}, workspace=workspace)
    assert response.success, response.error_message
    return dict(response.data)


@pytest.mark.asyncio
async def test_a_slice_registers_a_root_and_calls_run_in_folders_below_it(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "trees"
    (root / "task1").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    async with host_running(home, [SLICE, SAMPLE_TOOLS, REGISTRAR], config=BASE) as host:
        before = await echo_in(host, str(root / "task1"))
        assert before["ok"] is False and "not inside an allowed workspace root" in before["error"]
        registered = await host.call("registrar.register", path=str(root))
        assert registered.success, registered.error_message
        assert registered.data["roots"] == [str(root.resolve())]
        ran = await echo_in(host, str(root / "task1"))
        assert ran["ok"] and ran["data"]["workspace"] == str((root / "task1").resolve())
        default = await host.call("tools.execute", tool="echo", arguments={"text": "hi"})
        assert default.data["data"]["workspace"] == str(home / "workspace")
        for bad, why in [
            (str(root), "not inside an allowed workspace root"),  # the root itself: below it only
            (str(root / "escape"), "not inside an allowed workspace root"),  # a symlink out
            (str(root / "task1" / ".." / ".." / "elsewhere"), "not inside an allowed workspace root"),
            (str(root / "missing"), "not an existing folder"),
            ("task1", "must be an absolute path"),
            ("/", "not inside an allowed workspace root"),
        ]:
            refused = await echo_in(host, bad)
            assert refused["ok"] is False and why in refused["error"], (bad, refused)
        assert "\n" not in refused["error"]


@pytest.mark.asyncio
async def test_roots_that_would_expose_the_home_or_the_system_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with host_running(home, [SLICE, SAMPLE_TOOLS, REGISTRAR], config=BASE) as host:
        for path, why in [
            ("/", "file-system root"),
            (str(home), "holds the refactorbot home"),
            (str(tmp_path), "holds the refactorbot home"),
            (str(home / "slices"), "holds the host's databases"),
            ("relative/folder", "not an absolute path"),
            (str(tmp_path / "missing"), "not an existing folder"),
        ]:
            refused = await host.call("registrar.register", path=path)
            assert not refused.success and why in refused.error_message, (path, refused.error_message)
        listed = await host.call("tools.workspace_roots")
        assert listed.data == {"roots": []}


@pytest.mark.asyncio
async def test_the_api_and_cli_cannot_register_a_root(tmp_path: Path) -> None:
    root = tmp_path / "trees"
    (root / "task1").mkdir(parents=True)
    async with host_running(tmp_path / "home", [SLICE, SAMPLE_TOOLS], config=BASE) as host:
        # host.call routes without a caller, as the API and `refactorbot call` do.
        refused = await host.call("tools.allow_workspace_root", path=str(root))
        assert not refused.success and refused.error_type == "refused"
        assert "accepted only from another slice" in refused.error_message
        assert (await echo_in(host, str(root / "task1")))["ok"] is False


@pytest.mark.asyncio
async def test_configured_roots_and_tools_with_their_own_workspace(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "trees"
    (root / "a").mkdir(parents=True)
    pinned = tmp_path / "pinned"
    config = {
        **BASE,
        "slices": {"tools": {"extra_workspace_roots": [str(root)]}},
        "tools": {"echo": {"workspace": str(pinned)}},
    }
    async with host_running(home, [SLICE, SAMPLE_TOOLS], config=config) as host:
        assert (await host.call("tools.workspace_roots")).data == {"roots": [str(root.resolve())]}
        refused = await echo_in(host, str(root / "a"))
        assert refused["ok"] is False and "has its own workspace" in refused["error"]
    bad = {**BASE, "slices": {"tools": {"extra_workspace_roots": ["/"]}}}
    async with host_running(home, [SLICE, SAMPLE_TOOLS], config=bad) as host:
        status = {row["slice_id"]: row for row in host.slice_status()}["tools"]
        assert status["status"] == "failed" and "file-system root" in (status["error"] or "")
    assert os.path.isdir(home)
